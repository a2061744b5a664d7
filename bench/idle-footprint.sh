#!/usr/bin/env bash
# jemsafe's own footprint while it supervises an idle MariaDB: RSS, CPU time and wakeups
# (context switches) over IDLE_SECONDS (default 60), with [triggers] and [timeline] at
# their defaults, with both off, and with both off and growth checks every 10 s. Without a
# cgroup memory limit the default triggers check nothing (limit90 applies under a cgroup
# limit only), so "defaults" is the timeline's sample every 10 s alone.
# JEMSAFE=path/to/jemsafe (default target/release/jemsafe; the shim is found beside it).
# Usage: bench/idle-footprint.sh  (as root, after a build)
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

counters() { # CPU ns (schedstat: exact, where stat's ticks are 10 ms), voluntary switches (wakeups), VmRSS kB
    echo "$(cut -d' ' -f1 "/proc/$1/schedstat") \
$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$1/status") \
$(awk '/VmRSS/ {print $2}' "/proc/$1/status")"
}

measure() { # label, config
    "$jemsafe" run -c "$2" 2>"$dir/$1.log" >/dev/null &
    pid=$!
    for _ in $(seq 1 300); do grep -qs "ready for connections" "$dir/$1.log" && break; sleep 0.2; done
    grep -qs "ready for connections" "$dir/$1.log" || { echo "mariadbd did not start"; cat "$dir/$1.log"; exit 1; }
    read -r cpu0 sw0 _ < <(counters "$pid")
    sleep "$seconds"   # the measurement interval itself, not synchronisation
    read -r cpu1 sw1 rss < <(counters "$pid")
    awk -v l="$1" -v rss="$rss" -v s="$seconds" -v ns="$((cpu1 - cpu0))" -v sw="$((sw1 - sw0))" 'BEGIN {
        printf "%-28s RSS %6d KiB   CPU %7.2f ms/min   wakeups %6.1f/min   (%d s)\n",
            l, rss, ns / 1e6 * 60 / s, sw * 60 / s, s }'
    kill "$pid"; wait "$pid" || true; pid=
}

# The sandbox creates the datadir and config; stop it once it is up, then measure `run`.
"$jemsafe" sandbox "$dir/sb" -p standby >/dev/null 2>"$dir/setup.log" &
pid=$!
for _ in $(seq 1 300); do grep -qs "ready for connections" "$dir/setup.log" && break; sleep 0.2; done
kill "$pid"; wait "$pid" || true; pid=
cp "$dir/sb/jemsafe.toml" "$dir/off.toml"
printf '\n[triggers]\nlimit_percent = []\n[timeline]\ninterval_s = 0\n' >>"$dir/off.toml"
cp "$dir/off.toml" "$dir/growth.toml"
sed -i 's/^\[dumps\]$/[dumps]\non_growth_mb = 512\ngrowth_check_s = 10/' "$dir/growth.toml"

echo "jemsafe supervising an idle $(mariadbd --version | awk '{print $3}'), profile standby, $(nproc) cores"
echo "binary: $jemsafe"
measure "defaults" "$dir/sb/jemsafe.toml"
measure "triggers and timeline off" "$dir/off.toml"
measure "off, growth check every 10s" "$dir/growth.toml"
