//! `jemsafe report` and `jemsafe leaks` on dumps written by someone hostile (mysqld's user
//! writes the dumps; root reads them): no hang on a FIFO, no object that cannot be checked
//! to be the one mapped, bounded memory on compression bombs and enormous lines, no
//! overflowing totals, no control character reaching the terminal or any output file.
//!
//! Every jemsafe runs as a child with a bounded wait (killed if it does not finish), and
//! its peak RSS comes from GNU time, whose own small process forks it: the peak RSS that
//! wait4 gives for a child of the test process counts the test process's own memory,
//! which is copied (or shared) until exec.

use crate::common::*;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// A bounded run of jemsafe, with its peak RSS.
pub(crate) struct Measured {
    pub(crate) code: i32,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
    /// Peak resident set size of the child, KiB.
    pub(crate) max_rss_kb: i64,
}

impl Measured {
    pub(crate) fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs jemsafe with `args`, separate debug files looked up in `debug_dirs` only; kills
/// it and fails the test if it has not finished within `timeout`.
pub(crate) fn jemsafe_bounded(args: &[&OsStr], debug_dirs: &Path, timeout: Duration) -> Measured {
    let rss_file = tempfile_path("maxrss");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args([OsStr::new("-f"), OsStr::new("%M"), OsStr::new("-o")])
        .arg(&rss_file)
        .arg(jemsafe_bin())
        .args(args)
        .env("JEMSAFE_DEBUG_DIRS", debug_dirs);
    let o = run_bounded(cmd, timeout);
    // GNU time writes "Command exited with non-zero status N" first when it is not 0.
    let max_rss_kb = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|t| t.lines().last()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time (apt-get install time)"));
    let _ = std::fs::remove_file(&rss_file);
    Measured {
        code: o.code,
        stdout: o.stdout,
        stderr: o.stderr,
        max_rss_kb,
    }
}

fn report(args: &[&str], dump: &Path, debug_dirs: &Path) -> Measured {
    let mut all: Vec<&OsStr> = vec![OsStr::new("report")];
    all.extend(args.iter().map(OsStr::new));
    all.push(dump.as_os_str());
    jemsafe_bounded(&all, debug_dirs, T)
}

/// Where a file is mapped in the dumps below: the whole file from this address.
const BASE: u64 = 0x40_0000;

/// A maps line mapping all of `path` executable at BASE, with the given device and inode
/// (None: the file's own).
fn maps_line(path: &Path, dev: Option<(u32, u32)>, inode: Option<u64>) -> String {
    let meta = std::fs::symlink_metadata(path).expect("stat the mapped file");
    let (major, minor) = dev.unwrap_or((libc::major(meta.dev()), libc::minor(meta.dev())));
    let len = meta.len().max(0x10000);
    format!(
        "{BASE:x}-{:x} r-xp 00000000 {major:02x}:{minor:02x} {} {}\n",
        BASE + len,
        inode.unwrap_or(meta.ino()),
        path.display()
    )
}

/// A dump with one stack of one frame at `pc` and the given maps lines.
fn dump(dir: &TempDir, name: &str, pc: u64, maps: &str) -> PathBuf {
    let text = format!(
        "heap_v2/524288\n  t*: 1: 4096 [0: 0]\n  t0: 1: 4096 [0: 0]\n\
         @ 0x{pc:x}\n  t*: 1: 4096 [0: 0]\n  t0: 1: 4096 [0: 0]\n\nMAPPED_LIBRARIES:\n{maps}"
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write dump");
    path
}

/// A copy of /usr/bin/true (an ELF every Debian has) and the address of a byte inside its
/// .text when mapped at BASE.
fn elf_copy(dir: &TempDir, name: &str) -> (PathBuf, u64) {
    let path = dir.join(name);
    std::fs::copy("/usr/bin/true", &path).expect("copy /usr/bin/true");
    (path.clone(), BASE + text_offset(&path) + 0x10)
}

fn text_offset(path: &Path) -> u64 {
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let text = file.section_by_name(".text").expect(".text");
    text.file_range().expect(".text in the file").0
}

fn objcopy(args: &[&OsStr]) {
    let out = Command::new("objcopy")
        .args(args)
        .output()
        .expect("run objcopy (apt-get install binutils)");
    assert!(
        out.status.success(),
        "objcopy {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Adds a `.debug_info` section holding `payload` and marks it SHF_COMPRESSED (objcopy
/// would only write honest compressed sections).
fn add_compressed_debug_info(path: &Path, payload: &[u8]) {
    let payload_path = path.with_extension("payload");
    std::fs::write(&payload_path, payload).unwrap();
    let mut arg = std::ffi::OsString::from(".debug_info=");
    arg.push(&payload_path);
    objcopy(&[
        OsStr::new("--add-section"),
        &arg,
        OsStr::new("--set-section-flags"),
        OsStr::new(".debug_info=readonly,debug"),
        path.as_os_str(),
    ]);
    let mut data = std::fs::read(path).unwrap();
    let at = {
        use object::read::elf::ElfFile64;
        use object::{Object, ObjectSection};
        let file = ElfFile64::<object::Endianness>::parse(&*data).unwrap();
        let section = file
            .sections()
            .find(|s| s.name() == Ok(".debug_info"))
            .expect("the added section");
        let header = section.elf_section_header() as *const _ as usize;
        header - data.as_ptr() as usize
    };
    // Elf64_Shdr.sh_flags is at offset 8.
    let flags = u64::from_le_bytes(data[at + 8..at + 16].try_into().unwrap());
    data[at + 8..at + 16].copy_from_slice(&(flags | 0x800).to_le_bytes());
    std::fs::write(path, data).unwrap();
}

/// Elf64_Chdr: type, reserved, size, alignment.
fn chdr(kind: u32, size: u64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&kind.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&1u64.to_le_bytes());
    v
}

/// A zlib stream of `n` MiB of zeros, about 1 KiB per MiB.
fn zlib_zeros(n: u64) -> Vec<u8> {
    let unit = deflate_unit(&vec![0u8; 1 << 20]);
    let mut out = vec![0x78, 0xda];
    for _ in 0..n {
        out.extend_from_slice(&unit);
    }
    out.extend_from_slice(&[0x03, 0x00]); // a final, empty, fixed-Huffman block
    let adler = (((n << 20) % 65521) << 16) | 1; // Adler-32 of zeros
    out.extend_from_slice(&(adler as u32).to_be_bytes());
    out
}

/// A zstd frame of `n` blocks of 128 KiB of zeros, 4 bytes each (RLE blocks).
fn zstd_zeros(n: u64) -> Vec<u8> {
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x50]; // magic, no size, 1 MiB window
    for i in 0..n {
        let last = u32::from(i + 1 == n);
        let header = ((128 * 1024) << 3) | (1 << 1) | last;
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(0);
    }
    out
}

#[test]
fn fixtures_decompress_to_what_they_claim() {
    let stream = zlib_zeros(3);
    let mut z = flate2::read::ZlibDecoder::new(&stream[..]);
    let mut v = Vec::new();
    z.read_to_end(&mut v).unwrap();
    assert_eq!(v.len(), 3 << 20);
    assert!(v.iter().all(|&b| b == 0));
    let gz = gzip_repeated(b"head\n", b"ab\n", 4);
    let mut v = Vec::new();
    let _ = flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut v);
    assert!(v.starts_with(b"head\nab\nab\nab\nab\n"), "{v:?}");
}

#[test]
fn fifos_named_by_a_dump_hang_nothing() {
    let dir = TempDir::new("hostile-fifo");
    let debug = TempDir::new("hostile-fifo-debug");
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
    // 1. a FIFO as a mapped object.
    let fifo = dir.join("libfifo.so");
    nix::unistd::mkfifo(&fifo, mode).unwrap();
    let d = dump(
        &dir,
        "fifo-object.heap",
        BASE + 0x10,
        &maps_line(&fifo, None, None),
    );
    let o = report(&[], &d, debug.path());
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains("is a FIFO, not a regular file"),
        "{}",
        o.stderr
    );
    assert!(o.out().contains("libfifo.so+0x10"), "{}", o.out());

    // 2. a FIFO where the object's separate debug file would be (by path).
    let (object, pc) = elf_copy(&dir, "prog");
    let rel = object.strip_prefix("/").unwrap();
    let debug_fifo = debug.path().join(rel);
    std::fs::create_dir_all(debug_fifo.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(&debug_fifo, mode).unwrap();
    let d = dump(&dir, "fifo-debug.heap", pc, &maps_line(&object, None, None));
    let o = report(&[], &d, debug.path());
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("is a FIFO"), "{}", o.stderr);

    // 3. the dump itself a FIFO: refused as malformed input, not waited on.
    let fifo_dump = dir.join("fifo.heap");
    nix::unistd::mkfifo(&fifo_dump, mode).unwrap();
    let o = report(&[], &fifo_dump, debug.path());
    assert_eq!(o.code, 65, "{}", o.stderr);
    assert!(o.stderr.contains("is a FIFO"), "{}", o.stderr);
}

/// [`elf_copy`] with a function symbol, `hostile_test_func`, where the address is.
/// objcopy's symbols have no size (st_size 0), so only jeprof's closest-symbol naming
/// (`--names jeprof`) gives the address their name: the tests that look for it use it.
fn elf_named(dir: &TempDir, name: &str) -> (PathBuf, u64) {
    let (path, pc) = elf_copy(dir, name);
    objcopy(&[
        OsStr::new("--add-symbol"),
        OsStr::new("hostile_test_func=.text:0x0,function,global"),
        OsStr::new("--add-symbol"),
        OsStr::new("zz_end=.text:0x2000,function,global"),
        path.as_os_str(),
    ]);
    (path, pc)
}

#[test]
fn objects_that_cannot_be_checked_are_never_named() {
    let dir = TempDir::new("hostile-ident");
    let debug = TempDir::new("hostile-ident-debug");
    let (object, pc) = elf_named(&dir, "prog");
    let named = |o: &Measured| o.out().contains("hostile_test_func");

    // The file itself, correctly described, is named (so the checks below mean something).
    let d = dump(&dir, "good.heap", pc, &maps_line(&object, None, None));
    let o = report(&["--names", "jeprof"], &d, debug.path());
    assert!(named(&o), "{}\n{}", o.out(), o.stderr);

    // Inode 0 in the maps: no comparison possible, so no name; one note.
    let d = dump(&dir, "inode0.heap", pc, &maps_line(&object, None, Some(0)));
    let o = report(&["--names", "jeprof"], &d, debug.path());
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!named(&o), "{}", o.out());
    assert_eq!(o.stderr.matches("inode 0").count(), 1, "{}", o.stderr);

    // A symbolic link at the mapped path (the kernel writes resolved paths).
    let link = dir.join("link");
    std::os::unix::fs::symlink(&object, &link).unwrap();
    let ino = std::fs::metadata(&object).unwrap().ino();
    let d = dump(&dir, "link.heap", pc, &maps_line(&link, None, Some(ino)));
    let o = report(&["--names", "jeprof"], &d, debug.path());
    assert!(!named(&o), "{}", o.out());
    assert!(o.stderr.contains("is a symbolic link"), "{}", o.stderr);
    assert!(o.out().contains("link+0x"), "{}", o.out());

    // Same inode number, another device: another file.
    let fs = nix::sys::statfs::statfs(&object).unwrap().filesystem_type();
    if fs == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC || fs == nix::sys::statfs::BTRFS_SUPER_MAGIC {
        eprintln!("skipping the device check: overlayfs and btrfs are exempt from it");
        return;
    }
    let d = dump(
        &dir,
        "dev.heap",
        pc,
        &maps_line(&object, Some((0x12, 0x34)), None),
    );
    let o = report(&["--names", "jeprof"], &d, debug.path());
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!named(&o), "{}", o.out());
    assert!(
        o.stderr.contains("device") && o.stderr.contains("12:34"),
        "{}",
        o.stderr
    );
}

/// Peak RSS allowed where the unbounded code took hundreds of MB (jemsafe itself, a debug
/// build, takes about 10 MB here).
const SMALL_RSS_KB: i64 = 100 * 1024;

#[test]
fn compressed_debug_sections_are_decompressed_within_bounds() {
    let dir = TempDir::new("hostile-elf");
    let debug = TempDir::new("hostile-elf-debug");

    // zlib, honest about its size: 800 MiB from about 800 KiB. Refused by the ratio.
    let (object, pc) = elf_copy(&dir, "zbomb");
    let mut payload = chdr(1, 800 << 20);
    payload.extend_from_slice(&zlib_zeros(800)[..]);
    add_compressed_debug_info(&object, &payload);
    let d = dump(&dir, "zlib.heap", pc, &maps_line(&object, None, None));
    let o = report(&["--names", "jeprof"], &d, debug.path());
    eprintln!("zlib bomb: peak RSS {} KiB", o.max_rss_kb);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("section .debug_info"), "{}", o.stderr);
    assert!(
        o.stderr.contains("838860800 bytes once decompressed"),
        "{}",
        o.stderr
    );
    assert!(o.max_rss_kb < SMALL_RSS_KB, "peak RSS {} KiB", o.max_rss_kb);

    // zstd, lying about its size: claims 1 MiB, holds 800 MiB. Decoding stops at 1 MiB.
    let (object, pc) = elf_copy(&dir, "zstdbomb");
    let mut payload = chdr(2, 1 << 20);
    payload.extend_from_slice(&zstd_zeros(6400));
    add_compressed_debug_info(&object, &payload);
    let d = dump(&dir, "zstd.heap", pc, &maps_line(&object, None, None));
    let o = report(&["--names", "jeprof"], &d, debug.path());
    eprintln!("zstd bomb: peak RSS {} KiB", o.max_rss_kb);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.max_rss_kb < SMALL_RSS_KB, "peak RSS {} KiB", o.max_rss_kb);
}

#[test]
fn compressed_and_enormous_dumps_are_refused_within_bounds() {
    let dir = TempDir::new("hostile-dump");
    let debug = TempDir::new("hostile-dump-debug");
    // 1 GiB of zeros in 1 MiB: one enormous line.
    let gz = dir.join("zeros.heap.gz");
    let zeros = vec![0u8; 1 << 20];
    std::fs::write(&gz, gzip_repeated(b"", &zeros, 1024)).unwrap();
    let o = report(&["--names", "jeprof"], &gz, debug.path());
    eprintln!("1 GiB gzip of zeros: peak RSS {} KiB", o.max_rss_kb);
    assert_eq!(o.code, 65, "{}", o.stderr);
    assert!(
        o.stderr.contains("line 1: the line is longer than"),
        "{}",
        o.stderr
    );
    assert!(o.max_rss_kb < SMALL_RSS_KB, "peak RSS {} KiB", o.max_rss_kb);

    // The same without compression: a 2 MiB line.
    let long = dir.join("long.heap");
    let mut f = std::fs::File::create(&long).unwrap();
    f.write_all(b"heap_v2/524288\n@").unwrap();
    f.write_all(&vec![b'1'; 2 << 20]).unwrap();
    drop(f);
    let o = report(&[], &long, debug.path());
    eprintln!("a 2 MiB line: peak RSS {} KiB", o.max_rss_kb);
    assert_eq!(o.code, 65, "{}", o.stderr);
    assert!(
        o.stderr.contains("line 2: the line is longer than"),
        "{}",
        o.stderr
    );

    // Well-formed lines, 1 GiB of them once decompressed: refused at --max-dump-mb.
    let chunk = "@ 0x1\n  t*: 1: 8 [0: 0]\n".repeat(1 << 16);
    let many = dir.join("many.heap.gz");
    std::fs::write(
        &many,
        gzip_repeated(
            b"heap_v2/524288\n",
            chunk.as_bytes(),
            (1u64 << 30) / chunk.len() as u64,
        ),
    )
    .unwrap();
    let o = report(&["--max-dump-mb", "8"], &many, debug.path());
    eprintln!("1 GiB of stacks, gzipped: peak RSS {} KiB", o.max_rss_kb);
    assert_eq!(o.code, 65, "{}", o.stderr);
    for needle in ["many.heap.gz", "more than 8 MiB", "--max-dump-mb"] {
        assert!(o.stderr.contains(needle), "{needle}: {}", o.stderr);
    }
    assert!(o.max_rss_kb < SMALL_RSS_KB, "peak RSS {} KiB", o.max_rss_kb);
    // leaks reads through the same limit.
    let o = jemsafe_bounded(
        &[
            OsStr::new("leaks"),
            OsStr::new("--max-dump-mb"),
            OsStr::new("8"),
            many.as_os_str(),
            many.as_os_str(),
        ],
        debug.path(),
        T,
    );
    assert_eq!(o.code, 65, "{}", o.stderr);
    assert!(o.stderr.contains("--max-dump-mb"), "{}", o.stderr);
}

#[test]
fn counts_that_overflow_or_contradict_themselves_are_refused() {
    let dir = TempDir::new("hostile-counts");
    let head = "heap_v2/524288\n  t*: 0: 0 [0: 0]\n";
    let cases = [
        // Two stacks of 2^64 - 1 bytes: once "Total: 16384.0 PiB".
        (
            "overflow.heap",
            "@ 0x1\n  t*: 1: 18446744073709551615 [0: 0]\n@ 0x2\n  t*: 1: 18446744073709551615 [0: 0]\n",
            "line 4:",
            "2^64",
        ),
        // Raw sums that overflow only at the second stack.
        (
            "sum.heap",
            "@ 0x1\n  t*: 1000000: 10000000000000000000 [0: 0]\n@ 0x2\n  t*: 1000000: 10000000000000000000 [0: 0]\n",
            "line 6:",
            "2^64",
        ),
        // 10^14 one-byte objects: fits, but un-sampled at 1 in 512 KiB it does not.
        (
            "unsampled.heap",
            "@ 0x1\n  t*: 100000000000000: 100000000000000 [0: 0]\n",
            "line 4:",
            "2^64",
        ),
        ("zero-objects.heap", "@ 0x1\n  t*: 0: 4096 [0: 0]\n", "line 4:", "0 objects but 4096 bytes"),
        ("zero-alloc.heap", "@ 0x1\n  t*: 1: 8 [0: 99]\n", "line 4:", "0 objects but 99 bytes"),
    ];
    for (name, body, line, what) in cases {
        let path = dir.join(name);
        std::fs::write(&path, format!("{head}{body}\nMAPPED_LIBRARIES:\n")).unwrap();
        let o = report(&[], &path, dir.path());
        assert_eq!(o.code, 65, "{name}: {}", o.stderr);
        for needle in [name, line, what] {
            assert!(o.stderr.contains(needle), "{name}: {needle}: {}", o.stderr);
        }
        assert!(!o.out().contains("PiB"), "{}", o.out());
    }
}

/// No byte that drives a terminal: C0 controls (newline and tab aside, which the outputs
/// use themselves), DEL, and C1 controls (as UTF-8).
fn assert_no_controls(what: &str, text: &str) {
    for c in text.chars() {
        let bad = matches!(c, '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}');
        assert!(!bad, "{what} holds {c:?}:\n{text}");
    }
}

#[test]
fn control_characters_never_reach_any_output() {
    let dir = TempDir::new("hostile-ctrl");
    let debug = TempDir::new("hostile-ctrl-debug");
    // A symbol name with an escape sequence, a bell, a newline, a C1 CSI and a `;`.
    let (object, pc) = elf_copy(&dir, "prog");
    let evil = "ev\u{1b}[31mil;x\nline\u{7}\u{9b}2J";
    objcopy(&[
        OsStr::new("--add-symbol"),
        OsStr::new(&format!("{evil}=.text:0x0,function,global")),
        OsStr::new("--add-symbol"),
        OsStr::new("zz_end=.text:0x2000,function,global"),
        object.as_os_str(),
    ]);
    // And an object whose path holds an OSC title sequence (missing: its name is raw).
    let evil_path = format!("{}/lib\u{1b}]0;owned\u{7}.so", dir.path().display());
    let maps = format!(
        "{}7f0000000000-7f0000100000 r-xp 00000000 fe:00 12345 {evil_path}\n",
        maps_line(&object, None, None)
    );
    let text = format!(
        "heap_v2/524288\n  t*: 2: 8192 [0: 0]\n@ 0x{pc:x}\n  t*: 1: 4096 [0: 0]\n\
         @ 0x7f0000000010 0x{pc:x}\n  t*: 1: 4096 [0: 0]\n\nMAPPED_LIBRARIES:\n{maps}"
    );
    let d = dir.join("ctrl.heap");
    std::fs::write(&d, text).unwrap();

    let o = report(&["--names", "jeprof"], &d, debug.path());
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_no_controls("text report", &o.out());
    assert_no_controls("warnings", &o.stderr);
    assert!(
        o.out().contains("ev\\x1b[31mil;x\\x0aline\\x07\\x9b2J"),
        "{}",
        o.out()
    );
    assert!(
        o.stderr.contains("lib\\x1b]0;owned\\x07.so"),
        "{}",
        o.stderr
    );

    let o = report(&["--names", "jeprof", "--by", "stack"], &d, debug.path());
    assert_no_controls("stacks", &o.out());
    let o = report(&["--names", "jeprof", "--by", "object"], &d, debug.path());
    assert_no_controls("objects", &o.out());

    // Folded stacks: one line per stack, frames split only by our own `;`.
    let o = report(
        &["--names", "jeprof", "--format", "collapsed"],
        &d,
        debug.path(),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let folded = o.out();
    assert_no_controls("folded stacks", &folded);
    let lines: Vec<&str> = folded.lines().collect();
    assert_eq!(lines.len(), 2, "{folded}");
    assert!(lines.iter().any(|l| l.split(';').count() == 2), "{folded}");
    assert!(lines.iter().all(|l| l.split(';').count() <= 2), "{folded}");

    let svg = dir.join("out.svg");
    let o = report(
        &[
            "--names",
            "jeprof",
            "--format",
            "svg",
            "-o",
            svg.to_str().unwrap(),
        ],
        &d,
        debug.path(),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_no_controls("svg", &std::fs::read_to_string(&svg).unwrap());

    let pb = dir.join("out.pb.gz");
    let o = report(
        &[
            "--names",
            "jeprof",
            "--format",
            "pprof",
            "-o",
            pb.to_str().unwrap(),
        ],
        &d,
        debug.path(),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    use prost::Message;
    let raw = jemsafe_report::decompress(std::fs::read(&pb).unwrap()).unwrap();
    let p = jemsafe_report::pprof::Profile::decode(&raw[..]).unwrap();
    for s in &p.string_table {
        assert_no_controls("pprof string", s);
    }
    assert!(p.string_table.iter().any(|s| s.contains("ev\\x1b[31m")));
}

/// A fresh path in the temporary directory for a file a child writes.
fn tempfile_path(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "jemsafe-test-{tag}.{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}
