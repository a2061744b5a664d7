#!/usr/bin/env bash
# jemsafe's own footprint while it supervises an idle MariaDB: RSS, CPU time and wakeups
# (context switches) over IDLE_SECONDS (default 60), once with nothing scheduled and once
# with growth checks every 10 s. Usage: bench/idle-footprint.sh  (as root, after a build)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${IDLE_SECONDS:-60}
jemsafe=${JEMSAFE:-target/release/jemsafe}
[ -x "$jemsafe" ] || cargo build --release --workspace
dir=$(mktemp -d /tmp/jemsafe-idle.XXXXXX)
chmod 755 "$dir"   # mysqld runs as mysql and must reach the sandbox below it
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

counters() { # utime+stime ticks, voluntary+involuntary switches, VmRSS kB
    local stat; stat=$(cut -d' ' -f14,15 "/proc/$1/stat")
    echo "$(( ${stat% *} + ${stat#* } )) \
$(awk '/ctxt_switches/ {s+=$2} END {print s}' "/proc/$1/status") \
$(awk '/VmRSS/ {print $2}' "/proc/$1/status")"
}

measure() { # label, config
    "$jemsafe" run -c "$2" 2>"$dir/$1.log" >/dev/null &
    pid=$!
    for _ in $(seq 1 300); do grep -q "ready for connections" "$dir/$1.log" && break; sleep 0.2; done
    grep -q "ready for connections" "$dir/$1.log" || { echo "mariadbd did not start"; cat "$dir/$1.log"; exit 1; }
    read -r cpu0 sw0 _ < <(counters "$pid")
    sleep "$seconds"   # the measurement interval itself, not synchronisation
    read -r cpu1 sw1 rss < <(counters "$pid")
    local hz; hz=$(getconf CLK_TCK)
    printf '%-28s RSS %6d KiB   CPU %5.3f s   wakeups %4d in %d s\n' \
        "$1" "$rss" "$(awk -v t="$((cpu1 - cpu0))" -v hz="$hz" 'BEGIN {print t / hz}')" "$((sw1 - sw0))" "$seconds"
    kill "$pid"; wait "$pid" || true; pid=
}

# The sandbox creates the datadir and config; stop it once it is up, then measure `run`.
"$jemsafe" sandbox "$dir/sb" -p standby >/dev/null 2>"$dir/setup.log" &
pid=$!
for _ in $(seq 1 300); do grep -q "ready for connections" "$dir/setup.log" && break; sleep 0.2; done
kill "$pid"; wait "$pid" || true; pid=
cp "$dir/sb/jemsafe.toml" "$dir/growth.toml"
sed -i 's/^\[dumps\]$/[dumps]\non_growth_mb = 512\ngrowth_check_s = 10/' "$dir/growth.toml"

echo "jemsafe supervising an idle $(mariadbd --version | awk '{print $3}'), profile standby, $(nproc) cores"
measure "idle, no timers" "$dir/sb/jemsafe.toml"
measure "idle, growth check every 10s" "$dir/growth.toml"
