#!/usr/bin/env bash
# jemsafe report vs jeprof --text: wall time and peak RSS on
#   (a) a mariadbd heap dump (taken here from a `jemsafe sandbox`, or MARIADB_DUMP=FILE), and
#   (b) a dump of a C program built with full DWARF (gcc -g) with 2^DEPTH distinct stacks,
#       every allocation sampled (lg_prof_sample:0); the program is the one in
#       tests/report_jeprof.rs.
#
#   bench/report-vs-jeprof.sh            (as root for (a); needs gcc, jeprof, /usr/bin/time)
#   DEPTH=14 RUNS=3 MARIADB_DUMP=/var/lib/jemsafe/x.heap bench/report-vs-jeprof.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEPTH=${DEPTH:-14}
RUNS=${RUNS:-3}
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time: apt-get install time" >&2; exit 2; }
command -v jeprof >/dev/null || { echo "needs jeprof: apt-get install libjemalloc-dev" >&2; exit 2; }
cargo build --release --quiet -p jemsafe --bin jemsafe
cargo build --release --quiet -p jemsafe-shim
JEMSAFE=$PWD/target/release/jemsafe
LIBJEMALLOC=/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2
work=$(mktemp -d /tmp/jemsafe-bench-report.XXXXXX)
chmod 755 "$work"   # mysqld (as mysql) must reach the sandbox inside it
sandbox_pid=
cleanup() {
    if [ -n "$sandbox_pid" ]; then kill -TERM "$sandbox_pid" 2>/dev/null || true; wait "$sandbox_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# One measurement: prints "seconds max_rss_kib".
measure() {
    local out=$work/time.$$
    /usr/bin/time -v "$@" >/dev/null 2>"$out" || { cat "$out" >&2; return 1; }
    local wall rss
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out" |
        awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out")
    echo "$wall $rss"
}

# Best wall time and the peak RSS of RUNS runs.
best() {
    local best_t= best_r=0 t r i
    for ((i = 0; i < RUNS; i++)); do
        read -r t r < <(measure "$@")
        if [ -z "$best_t" ] || awk "BEGIN{exit !($t < $best_t)}"; then best_t=$t; fi
        [ "$r" -gt "$best_r" ] && best_r=$r
    done
    echo "$best_t $best_r"
}

compare() { # name binary dump
    local name=$1 bin=$2 dump=$3 jt jr st sr
    read -r jt jr < <(best jeprof --text --show_bytes "$bin" "$dump")
    read -r st sr < <(best "$JEMSAFE" report --bytes --top 0 "$dump")
    awk -v n="$name" -v jt="$jt" -v jr="$jr" -v st="$st" -v sr="$sr" 'BEGIN {
        sp = (st > 0) ? jt / st : 0
        printf "%-34s %9.2f s %8.1f MB %9.3f s %8.1f MB %8.1fx\n", n, jt, jr/1024, st, sr/1024, sp }'
}

# (b) the C program with many stacks.
sed -n '/^\/\/ BEGIN C/,/^\/\/ END C/p' tests/report_jeprof.rs |
    sed '1,2d;$d' | sed '$d' >"$work/stacks.c"
gcc -g -O0 -fno-omit-frame-pointer -o "$work/stacks" "$work/stacks.c" -ldl
LD_PRELOAD=$LIBJEMALLOC MALLOC_CONF=prof:true,lg_prof_sample:0 \
    "$work/stacks" "$DEPTH" 1 "$work/stacks.heap" >/dev/null
c_stacks=$(grep -c '^@' "$work/stacks.heap")

# (a) mariadbd.
maria=${MARIADB_DUMP:-}
if [ -z "$maria" ]; then
    sb=$work/sandbox
    "$JEMSAFE" sandbox "$sb" >"$work/sandbox.log" 2>&1 &
    sandbox_pid=$!
    for _ in $(seq 1 180); do
        [ -S "$sb/mysqld/mysqld.sock" ] && break
        sleep 1
    done
    mariadb --socket="$sb/mysqld/mysqld.sock" -uroot -e "CREATE DATABASE b; USE b; \
        CREATE TABLE b.t (id INT PRIMARY KEY, pad TEXT) ENGINE=InnoDB; \
        INSERT INTO b.t SELECT seq, REPEAT('x', 1000) FROM seq_1_to_20000;" >/dev/null
    kill -USR1 "$sandbox_pid"
    for _ in $(seq 1 30); do
        maria=$(ls "$sb"/dumps/*.heap 2>/dev/null | head -1 || true)
        [ -n "$maria" ] && break
        sleep 1
    done
    sleep 1
fi
maria_stacks=$(grep -c '^@' "$maria")

echo "best of $RUNS runs; jemsafe $($JEMSAFE --version | cut -d' ' -f2), $(nproc) cores"
printf "%-34s %11s %11s %11s %11s %9s\n" dump "jeprof" "jeprof RSS" "jemsafe" "jemsafe RSS" "speed-up"
compare "(a) mariadbd, $maria_stacks stacks" /usr/sbin/mariadbd "$maria"
compare "(b) C -g, $c_stacks stacks" "$work/stacks" "$work/stacks.heap"
