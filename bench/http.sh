#!/usr/bin/env bash
# [http] endpoints beside the plain paths, in one run on one MariaDB sandbox: a /metrics
# scrape vs `jemsafe status`, and /debug/pprof/heap (dump + symbolized pprof) vs
# `jemsafe dump` (dump only), ROUNDS times each (default 20), wall time per request.
# Usage: bench/http.sh  (as root, after a build)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-20}
jemsafe=${JEMSAFE:-target/release/jemsafe}
[ -x "$jemsafe" ] || cargo build --release --workspace
dir=$(mktemp -d /tmp/jemsafe-http.XXXXXX)
chmod 755 "$dir"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The sandbox writes its config; run it again with [http] added.
"$jemsafe" sandbox "$dir/sb" -p leak >/dev/null 2>"$dir/setup.log" &
pid=$!
for _ in $(seq 1 300); do grep -q "ready for connections" "$dir/setup.log" && break; sleep 0.2; done
kill "$pid"; wait "$pid" || true; pid=
cfg="$dir/sb/jemsafe.toml"
printf '\n[http]\nlisten = "127.0.0.1:%s"\n' "$port" >> "$cfg"
sed -i 's/^\[dumps\]$/[dumps]\nmin_interval_ms = 0/' "$cfg"
"$jemsafe" run -c "$cfg" 2>"$dir/log" >/dev/null &
pid=$!
for _ in $(seq 1 300); do grep -q "ready for connections" "$dir/log" && break; sleep 0.2; done

time_each() { # label, command...; prints median and max wall time in ms
    local label=$1; shift
    for _ in $(seq 1 "$rounds"); do
        local t0 t1; t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N)
        echo $(( (t1 - t0) / 1000 ))
    done | sort -n | awk -v label="$label" '{v[NR]=$1} END {printf "%-44s median %8.1f ms   max %8.1f ms\n", label, v[int((NR+1)/2)]/1000, v[NR]/1000}'
}
time_each "GET /metrics (curl)" curl -sf "http://127.0.0.1:$port/metrics"
time_each "jemsafe status --json" "$jemsafe" status --json -c "$cfg"
time_each "GET /debug/pprof/heap (dump + pprof)" curl -sf -o /dev/null "http://127.0.0.1:$port/debug/pprof/heap"
time_each "GET /debug/pprof/heap?raw=1 (dump + file)" curl -sf -o /dev/null "http://127.0.0.1:$port/debug/pprof/heap?raw=1"
time_each "jemsafe dump" "$jemsafe" dump -c "$cfg"
