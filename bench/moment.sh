#!/usr/bin/env bash
# What catching the moment costs while nothing happens: jemsafe supervising an idle
# MariaDB in a v1 memory cgroup with a 2 GiB limit, once with [triggers] and [timeline] at
# their defaults (a statm check every 1000 ms, limit90 armed, a timeline sample every 10 s)
# and once with both off (check_ms = 60000, limit_percent = [], interval_s = 0), side by
# side. Over BENCH_SECONDS each (default 120; BENCH_SECONDS=600 for the 10 minutes of the
# issue): jemsafe's wakeups per minute (voluntary context switches) and CPU, the CPU of
# the shim's thread inside mysqld, the timeline's growth per hour. Then the round trip of
# a timeline sample (request to the shim to the record on disk, from jemsafe's debug log)
# beside a heap dump's (request to the file under its final name), 20 of each.
# Usage: bench/moment.sh   (as root, on a machine with /sys/fs/cgroup/memory)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${BENCH_SECONDS:-120}
jemsafe=${JEMSAFE:-target/release/jemsafe}
[ -x "$jemsafe" ] || cargo build --release --workspace
jemsafe=$(realpath "$jemsafe")
dir=$(mktemp -d /tmp/jemsafe-moment.XXXXXX)
chmod 755 "$dir"   # mysqld runs as mysql and must reach the sandbox below it
own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
cg="/sys/fs/cgroup/memory${own%/}/jemsafe-bench-$$"
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -d "$cg" ] && rmdir "$cg" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
mkdir "$cg"
echo $((2 << 30)) > "$cg/memory.limit_in_bytes"

wait_for() { # file, text: up to 60 s
    for _ in $(seq 1 300); do grep -q "$2" "$1" && return 0; sleep 0.2; done
    echo "no \"$2\" in $1:"; cat "$1"; exit 1
}

# Nanoseconds on a CPU (schedstat: exact, where stat's clock ticks are 10 ms).
cpu_ns() { cut -d' ' -f1 "$1"; }
switches() { awk '/^voluntary_ctxt_switches/ {print $2}' "$1"; }

# The sandbox creates the datadir and config; stop it once it is up.
"$jemsafe" sandbox "$dir/sb" -p standby >/dev/null 2>"$dir/setup.log" &
pid=$!
wait_for "$dir/setup.log" "ready for connections"
kill "$pid"; wait "$pid" || true; pid=
cp "$dir/sb/jemsafe.toml" "$dir/on.toml"
cp "$dir/sb/jemsafe.toml" "$dir/off.toml"
printf '\n[triggers]\nlimit_percent = []\ncheck_ms = 60000\n[timeline]\ninterval_s = 0\n' >>"$dir/off.toml"

run() { # label, config, log level
    rm -f "$dir/sb/dumps/mysqld.timeline"
    sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" \
        "$jemsafe" --log-level "$3" run -c "$2" >/dev/null 2>"$dir/$1.log" &
    pid=$!
    wait_for "$dir/$1.log" "ready for connections"
    mysqld=$(sed -n 's/.*started mysqld pid \([0-9]*\):.*/\1/p' "$dir/$1.log" | head -1)
    shim=$(grep -l '^jemsafe-shim$' /proc/"$mysqld"/task/*/comm | head -1)
    shim=${shim%/comm}
}

measure() { # label, config
    run "$1" "$2" info
    sleep 5   # let start-up settle before the window opens
    local j0 s0 m0 b0 j1 s1 m1 b1
    j0=$(cpu_ns "/proc/$pid/schedstat"); s0=$(switches "/proc/$pid/status")
    m0=$(cpu_ns "$shim/schedstat"); b0=$(stat -c %s "$dir/sb/dumps/mysqld.timeline" 2>/dev/null || echo 0)
    sleep "$seconds"   # the measurement window itself, not synchronisation
    j1=$(cpu_ns "/proc/$pid/schedstat"); s1=$(switches "/proc/$pid/status")
    m1=$(cpu_ns "$shim/schedstat"); b1=$(stat -c %s "$dir/sb/dumps/mysqld.timeline" 2>/dev/null || echo 0)
    awk -v l="$1" -v s="$seconds" -v sw=$((s1 - s0)) -v j=$((j1 - j0)) \
        -v m=$((m1 - m0)) -v b=$((b1 - b0)) 'BEGIN {
        printf "%-36s %6.1f wakeups/min  jemsafe CPU %7.1f ms/min (%.4f%%)  shim thread CPU %6.2f ms/min  timeline %6.0f bytes/h\n",
            l, sw * 60 / s, j / 1e6 * 60 / s, 100 * j / 1e9 / s, m / 1e6 * 60 / s, b * 3600 / s }'
    kill "$pid"; wait "$pid" || true; pid=
}

echo "jemsafe supervising an idle $(mariadbd --version | awk '{print $3}') in a 2 GiB v1 memory cgroup," \
     "profile standby, $(nproc) cores, ${seconds} s per configuration"
measure "triggers and timeline off" "$dir/off.toml"
measure "defaults (check 1 s, timeline 10 s)" "$dir/on.toml"

# Round trips: a timeline sample every second (debug log) beside 20 dumps.
cp "$dir/on.toml" "$dir/rt.toml"
printf '\n[timeline]\ninterval_s = 1\n' >>"$dir/rt.toml"
run rt "$dir/rt.toml" debug
for _ in $(seq 1 20); do "$jemsafe" dump -c "$dir/rt.toml" >/dev/null; sleep 1.1; done
kill "$pid"; wait "$pid" || true; pid=
summary() { # label, microseconds one per line
    sort -n | awk -v l="$1" '{v[NR] = $1} END {
        if (NR == 0) { printf "%-34s none\n", l; exit }
        printf "%-34s n=%d  median %8.0f us  p90 %8.0f us  max %8.0f us\n",
            l, NR, v[int((NR + 1) / 2)], v[int(NR * 0.9 + 0.5)], v[NR] }'
}
grep -o 'timeline sample: [0-9]* us from the request to the record (with' "$dir/rt.log" |
    awk '{print $3}' | tail -20 | summary "timeline sample round trip"
grep -o 'round trip [0-9.]* ms)' "$dir/rt.log" | awk '{print $3 * 1000}' | tail -20 |
    summary "heap dump round trip"
