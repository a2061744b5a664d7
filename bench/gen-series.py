#!/usr/bin/env python3
"""Writes a synthetic series of jemalloc heap dumps (heap_v2 text) of one process.

    bench/gen-series.py OUT_DIR DUMPS STACKS [DEPTH] [PROGRAM]

DUMPS dumps of up to STACKS distinct stacks, DEPTH frames each (default 16), with return
addresses inside PROGRAM's executable segment (default /usr/sbin/mariadbd, mapped as a
PIE), so that they are symbolized as a real mysqld's would be. The subset of stacks grows:
the first dump holds half of them, the last all. 1 in 100 stacks leaks (grows in every
dump), 1 in 10 wobbles, the rest hold steady. Dump i's mtime is 10 minutes after dump
i-1's. Deterministic (fixed seed). No dependencies beyond Python 3.
"""
import os
import random
import struct
import sys


def exec_segment(path):
    """(vaddr, offset, size) of the first executable PT_LOAD of a 64-bit ELF."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            sys.exit(f"{path}: not a 64-bit ELF file")
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, p_flags, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", table, i * phentsize)
        if p_type == 1 and p_flags & 1:
            return p_vaddr, p_offset, p_filesz
    sys.exit(f"{path}: no executable segment")


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, dumps, stacks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    depth = int(sys.argv[4]) if len(sys.argv) > 4 else 16
    program = sys.argv[5] if len(sys.argv) > 5 else "/usr/sbin/mariadbd"
    if dumps < 1 or stacks < 1 or depth < 1:
        sys.exit("DUMPS, STACKS and DEPTH must be positive")
    vaddr, offset, size = exec_segment(program)
    st = os.stat(program)
    # The real device and inode: the symbolizer checks that the file is the one mapped.
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x} {st.st_ino}"
    base = 0x55D1C3800000
    start = base + (vaddr & ~0xFFF)
    end = (start + size + 0xFFF) & ~0xFFF
    maps = (
        "\nMAPPED_LIBRARIES:\n"
        f"{base:x}-{start:x} r--p 00000000 {ident} {program}\n"
        f"{start:x}-{end:x} r-xp {offset & ~0xFFF:08x} {ident} {program}\n"
        "7f3a00000000-7f3a00400000 rw-p 00000000 00:00 0 \n"
    )
    rng = random.Random(27)
    # Stacks share their outer frames, as real call trees do: level j (from the root) is
    # drawn from a pool that widens with depth.
    pools = [[start + rng.randrange(size) for _ in range(min(stacks, 4 << j))]
             for j in range(depth)]
    lines = []
    for _ in range(stacks):
        frames = [rng.choice(pools[j]) for j in range(depth)]
        lines.append("@ " + " ".join(f"0x{a:x}" for a in reversed(frames)) + "\n")
    kind = [("leak" if k % 100 == 7 else "wobble" if k % 10 == 3 else "steady")
            for k in range(stacks)]
    size_of = [rng.choice((16, 48, 128, 512, 4096)) for _ in range(stacks)]
    objects = [1 + rng.randrange(50) for _ in range(stacks)]
    os.makedirs(out, exist_ok=True)
    t0 = 1_765_000_000
    for i in range(dumps):
        held = stacks // 2 + (stacks - stacks // 2) * i // max(dumps - 1, 1)
        body = []
        total_objects = total_bytes = 0
        for k in range(held):
            n = objects[k]
            if kind[k] == "leak":
                n += 4 * i
            elif kind[k] == "wobble":
                n += (i * 7 + k) % 5
            b = n * size_of[k]
            total_objects += n
            total_bytes += b
            body.append(lines[k])
            body.append(f"  t*: {n}: {b} [0: 0]\n  t0: {n}: {b} [0: 0]\n")
        head = (f"heap_v2/524288\n  t*: {total_objects}: {total_bytes} [0: 0]\n"
                f"  t0: {total_objects}: {total_bytes} [0: 0]\n")
        path = os.path.join(out, f"series.{i:05d}.heap")
        with open(path, "w") as f:
            f.write(head)
            f.write("".join(body))
            f.write(maps)
        os.utime(path, (t0 + 600 * i, t0 + 600 * i))


if __name__ == "__main__":
    main()
