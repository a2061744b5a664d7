#!/usr/bin/env bash
# [http] endpoints beside the plain paths, in one run on one MariaDB sandbox: a /metrics
# scrape vs `jemsafe status`, and /debug/pprof/heap (dump + symbolized pprof) vs
# `jemsafe dump` (dump only), and `jemsafe report --format pprof` alone (the rendering in a
# process of its own, as the endpoint does it), ROUNDS times each (default 20), wall time.
# Then HEAP_REQUESTS (default 200) requests to /debug/pprof/heap one after the other, with
# `jemsafe run`'s RSS, virtual size, mappings and CPU time before and after: a daemon's
# memory must stay flat however often Pyroscope or Parca scrape it.
# Usage: bench/http.sh  (as root, after a build; JEMSAFE=path/to/jemsafe for another build)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-20}
heap_requests=${HEAP_REQUESTS:-200}
jemsafe=${JEMSAFE:-target/release/jemsafe}
[ -x "$jemsafe" ] || cargo build --release --workspace
dir=$(mktemp -d /tmp/jemsafe-http.XXXXXX)
chmod 755 "$dir"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The sandbox writes its config; run it again with [http] added.
: > "$dir/setup.log"; : > "$dir/log"   # there before the loops below read them
"$jemsafe" sandbox "$dir/sb" -p leak >/dev/null 2>"$dir/setup.log" &
pid=$!
for _ in $(seq 1 300); do grep -q "ready for connections" "$dir/setup.log" && break; sleep 0.2; done
kill "$pid"; wait "$pid" || true; pid=
cfg="$dir/sb/jemsafe.toml"
# /debug/pprof/* needs the bearer token (loopback too); every request below sends it.
install -m 600 /dev/null "$dir/token"
head -c 32 /dev/urandom | base64 > "$dir/token"
auth="Authorization: Bearer $(head -n1 "$dir/token")"
printf '\n[http]\nlisten = "127.0.0.1:%s"\ntoken_file = "%s"\n' "$port" "$dir/token" >> "$cfg"
sed -i 's/^\[dumps\]$/[dumps]\nmin_interval_ms = 0/' "$cfg"
"$jemsafe" run -c "$cfg" 2>"$dir/log" >/dev/null &
pid=$!
for _ in $(seq 1 300); do grep -q "ready for connections" "$dir/log" && break; sleep 0.2; done
grep -q "ready for connections" "$dir/log" || { echo "mariadbd did not start"; cat "$dir/log"; exit 1; }

time_each() { # label, command...; prints median and max wall time in ms
    local label=$1; shift
    for _ in $(seq 1 "$rounds"); do
        local t0 t1; t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N)
        echo $(( (t1 - t0) / 1000 ))
    done | sort -n | awk -v label="$label" '{v[NR]=$1} END {printf "%-44s median %8.1f ms   max %8.1f ms\n", label, v[int((NR+1)/2)]/1000, v[NR]/1000}'
}
time_each "GET /metrics (curl)" curl -sf -H "$auth" "http://127.0.0.1:$port/metrics"
time_each "jemsafe status --json" "$jemsafe" status --json -c "$cfg"
time_each "GET /debug/pprof/heap (dump + pprof)" curl -sf -H "$auth" -o /dev/null "http://127.0.0.1:$port/debug/pprof/heap"
time_each "GET /debug/pprof/heap?raw=1 (dump + file)" curl -sf -H "$auth" -o /dev/null "http://127.0.0.1:$port/debug/pprof/heap?raw=1"
time_each "jemsafe dump" "$jemsafe" dump -c "$cfg"
# What the endpoint's renderer child does, alone: a fresh process renders the newest dump.
time_each "jemsafe report --format pprof (a process)" "$jemsafe" report --format pprof -o /dev/null -c "$cfg"

footprint() { # RSS MiB, virtual MiB, mappings, CPU s of `jemsafe run` (children not counted)
    local stat; stat=$(cut -d' ' -f14,15 "/proc/$pid/stat")
    printf 'RSS %7.1f MiB   virtual %8.1f MiB   mappings %5d   CPU %7.2f s' \
        "$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$pid/status")" \
        "$(awk '/VmSize/ {print $2 / 1024}' "/proc/$pid/status")" \
        "$(wc -l < "/proc/$pid/maps")" \
        "$(awk -v t="$(( ${stat% *} + ${stat#* } ))" -v hz="$(getconf CLK_TCK)" 'BEGIN {print t / hz}')"
}
echo
echo "$heap_requests x GET /debug/pprof/heap, one after the other ($jemsafe):"
echo "  before: $(footprint)"
for _ in $(seq 1 "$heap_requests"); do
    t0=$(date +%s%N)
    curl -sf -H "$auth" -o /dev/null "http://127.0.0.1:$port/debug/pprof/heap"
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000 )) >> "$dir/heap-times"
done
echo "  after:  $(footprint)"
sort -n "$dir/heap-times" | awk '{v[NR]=$1; s+=$1} END {printf "  per request: median %.1f ms, mean %.1f ms, max %.1f ms\n", v[int((NR+1)/2)]/1000, s/NR/1000, v[NR]/1000}'
# Dumps written by the requests above are the sandbox's; the directory goes at exit.
