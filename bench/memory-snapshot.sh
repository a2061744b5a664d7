#!/usr/bin/env bash
# What a memory snapshot costs beside a heap dump, on a MariaDB under sysbench-free load
# (a loop of INSERTs): the shim's answer to `memory` (epoch + ~150 mallctl reads) and a
# dump's round trip, both as jemsafe logs them, over ROUNDS requests each (default 50),
# and the whole `jemsafe dump` command. JEMSAFE=path/to/jemsafe compares another build.
# Usage: bench/memory-snapshot.sh  (as root, after a build)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-50}
jemsafe=${JEMSAFE:-target/release/jemsafe}
[ -x "$jemsafe" ] || cargo build --release --workspace
dir=$(mktemp -d /tmp/jemsafe-memsnap.XXXXXX)
chmod 755 "$dir"   # mysqld runs as mysql and must reach the sandbox below it
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

"$jemsafe" --log-level debug sandbox "$dir/sb" -p leak >/dev/null 2>"$dir/log" &
pid=$!
for _ in $(seq 1 300); do grep -q "ready for connections" "$dir/log" && break; sleep 0.2; done
grep -q "ready for connections" "$dir/log" || { echo "mariadbd did not start"; cat "$dir/log"; exit 1; }
sock="$dir/sb/mysqld/mysqld.sock"
mariadb --socket="$sock" -uroot -e "CREATE DATABASE b; USE b; CREATE TABLE b.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(500)) ENGINE=MEMORY; INSERT INTO b.t (v) SELECT REPEAT('x', 500) FROM b.seq_1_to_20000;"
cfg="$dir/sb/jemsafe.toml"
for _ in $(seq 1 "$rounds"); do "$jemsafe" memory -c "$cfg" >/dev/null; done
# The command's whole time too: the round trip below ends when the shim's reply is
# handled; the file's checks, its sidecar (with /proc's reading) and the answer follow.
# Paced past the storm throttle (min_interval_ms, 1 s by default), which would queue them.
for _ in $(seq 1 "$rounds"); do
    sleep 1.1
    start=$(date +%s%N)
    "$jemsafe" dump -c "$cfg" >/dev/null
    echo $(( ($(date +%s%N) - start) / 1000 )) >>"$dir/dump-command-us"
done

stats() { # label; values in microseconds on stdin
    sort -n | awk -v label="$1" '{v[NR]=$1} END {if (NR == 0) {print label ": none"; exit}
        printf "%-34s n=%d  median %7.0f us  p90 %7.0f us  max %7.0f us\n", label, NR, v[int((NR+1)/2)], v[int(NR*0.9)], v[NR]}'
}
grep -o 'memory snapshot: the shim answered in [0-9]* us' "$dir/log" | awk '{print $(NF-1)}' | stats "memory snapshot (round trip)"
grep -o 'round trip [0-9.]* ms' "$dir/log" | awk '{print $3 * 1000}' | stats "heap dump (round trip)"
grep -o 'prof.dump [0-9]* us' "$dir/log" | awk '{print $2}' | stats "prof.dump inside mariadbd"
stats "jemsafe dump (the whole command)" <"$dir/dump-command-us"
