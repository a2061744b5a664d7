#!/usr/bin/env bash
# jemsafe report with debug information from debuginfod, on a dump of python3 (stripped,
# libc frames named only with libc's debug file):
#   first   jemsafe report, empty client cache: fetches libc's debug file from a local
#           `debuginfod -U` serving the libc6-dbg .deb (scripts/install-deps downloads it)
#   curl    the same download alone (what the first report is bounded by)
#   cached  jemsafe report again, the debug file in the cache (best of RUNS)
#   jeprof  jeprof --text with the same debug file installed (libc6-dbg), best of RUNS
#
#   bench/debuginfod.sh          (as root; needs debuginfod, jeprof, curl, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
command -v debuginfod >/dev/null || { echo "needs debuginfod: scripts/install-deps" >&2; exit 2; }
command -v jeprof >/dev/null || { echo "needs jeprof: apt-get install libjemalloc-dev" >&2; exit 2; }
deb=$(ls /var/cache/jemsafe-test/debs/libc6-dbg_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || { echo "needs libc6-dbg's .deb: scripts/install-deps" >&2; exit 2; }
dpkg -s libc6-dbg >/dev/null 2>&1 || { echo "jeprof's side needs libc6-dbg installed: apt-get install libc6-dbg" >&2; exit 2; }
cargo build --release --quiet -p jemsafe --bin jemsafe
JEMSAFE=$PWD/target/release/jemsafe
LIBJEMALLOC=/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2
work=$(mktemp -d /tmp/jemsafe-bench-debuginfod.XXXXXX)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# The dump.
LD_PRELOAD=$LIBJEMALLOC MALLOC_CONF=prof:true,prof_final:true,lg_prof_sample:12,prof_prefix:$work/py \
    python3 -c "import json, re; x = [str(i) * 20 for i in range(300000)]; y = json.dumps(x[:50000])"
dump=$(ls "$work"/py.*.f.heap | head -1)
stacks=$(grep -c '^@' "$dump")

# The server.
mkdir "$work/debs"
cp "$deb" "$work/debs/"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DEBUGINFOD_URLS= debuginfod -U -p "$port" -t 0 -g 0 -c 1 -d "$work/db.sqlite" "$work/debs" >"$work/server.log" 2>&1 &
server_pid=$!
libc=$(readlink -f /lib/$(uname -m)-linux-gnu/libc.so.6)
id=$(readelf -n "$libc" | sed -n 's/.*Build ID: //p')
for _ in $(seq 1 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/buildid/$id/debuginfo" && break
    sleep 0.1
done

report() {
    JEMSAFE_DEBUG_DIRS=$work/none DEBUGINFOD_CACHE_PATH=$work/cache \
        DEBUGINFOD_URLS=http://127.0.0.1:$port "$JEMSAFE" report --bytes --top 0 "$dump" >"$work/out.txt" 2>"$work/err.txt"
}
t0=$(now); report; t1=$(now)
first=$(secs "$t0" "$t1")
grep -q __libc_start_call_main "$work/out.txt" || { echo "libc frames not named:" >&2; cat "$work/out.txt" "$work/err.txt" >&2; exit 1; }
size=$(stat -c %s "$work/cache/$id/debuginfo")
t0=$(now); curl -sf -o "$work/curl.out" "http://127.0.0.1:$port/buildid/$id/debuginfo"; t1=$(now)
dl=$(secs "$t0" "$t1")
best() {
    local b= t0 t1 s i
    for ((i = 0; i < RUNS; i++)); do
        t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
        s=$(secs "$t0" "$t1")
        if [ -z "$b" ] || awk "BEGIN{exit !($s < $b)}"; then b=$s; fi
    done
    echo "$b"
}
cached=$(best report)
jeprof_t=$(best jeprof --text --show_bytes "$(readlink -f /usr/bin/python3)" "$dump")
echo "python3 dump, $stacks stacks; libc debug file $((size / 1024)) KiB over http://127.0.0.1; best of $RUNS; $(nproc) cores"
printf "%-44s %8s s\n" "jemsafe report, first (fetch into cache)" "$first"
printf "%-44s %8s s\n" "curl of the same file" "$dl"
printf "%-44s %8s s\n" "jemsafe report, debug file in cache" "$cached"
printf "%-44s %8s s\n" "jeprof --text, libc6-dbg installed" "$jeprof_t"
awk -v j="$jeprof_t" -v c="$cached" 'BEGIN { printf "speed-up (jeprof / cached report): %.1fx\n", j / c }'
