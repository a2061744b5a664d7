#!/usr/bin/env bash
# The latency of a heap dump asked for from SQL against one asked for with a signal, in
# the same run of one sandbox MariaDB under `jemsafe run`:
#   sql:  `mariadb -e 'SELECT jemsafe_dump()'` until it prints the new dump's path
#         (jemsafe_udf.so -> the shim -> jemsafe -> the dump, named, with its sidecar ->
#         the answer back the same way);
#   usr1: `kill -USR1 jemsafe` until the new *.usr1.heap file is there under its name.
# Alternated, BENCH_DUMPS of each (default 20), with storm control's interval at 0 so
# that no dump waits for another. A `SELECT 1` by the same client is timed as well: the
# client's own start-up, which the sql figure includes and the usr1 one does not; and
# BENCH_DUMPS calls in one connection, timed by the server, which exclude it.
# Usage: bench/sql-dump.sh   (as root; JEMSAFE=target/debug/jemsafe for a debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${BENCH_DUMPS:-20}
jemsafe=${JEMSAFE:-target/release/jemsafe}
[ -x "$jemsafe" ] || cargo build --release --workspace
jemsafe=$(realpath "$jemsafe")
build=$(dirname "$jemsafe")
dir=$(mktemp -d /tmp/jemsafe-sql-bench.XXXXXX)
chmod 755 "$dir"   # mysqld runs as mysql and must reach the sandbox below it
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

wait_for() { # file, text: up to 120 s
    for _ in $(seq 1 600); do grep -q "$2" "$1" && return 0; sleep 0.2; done
    echo "no \"$2\" in $1:"; cat "$1"; exit 1
}

mkdir -m 755 "$dir/plugins"
install -m 0644 "$build/libjemsafe_udf.so" "$dir/plugins/jemsafe_udf.so"
# The sandbox creates the datadir and config; stop it once it is up.
"$jemsafe" sandbox "$dir/sb" -p leak >/dev/null 2>"$dir/setup.log" &
pid=$!
wait_for "$dir/setup.log" "ready for connections"
kill "$pid"; wait "$pid" || true; pid=
sed 's/^\[dumps\]$/[dumps]\nmin_interval_ms = 0/' "$dir/sb/jemsafe.toml" >"$dir/bench.toml"
grep -q "^min_interval_ms = 0" "$dir/bench.toml"

"$jemsafe" run -c "$dir/bench.toml" -p leak -- --plugin-dir="$dir/plugins" >/dev/null 2>"$dir/run.log" &
pid=$!
wait_for "$dir/run.log" "ready for connections"
socket="$dir/sb/mysqld/mysqld.sock"
client() { mariadb --socket="$socket" -uroot -N -e "$1"; }
"$jemsafe" sql | mariadb --socket="$socket" -uroot
now() { date +%s%N; }
# Dumps written with trigger $1, from jemsafe's log (retention may delete the files).
count() { grep -c "bytes; $1; " "$dir/run.log" || true; }

: >"$dir/client" ; : >"$dir/sql" ; : >"$dir/usr1"
for _ in $(seq 1 "$n"); do
    t0=$(now); client 'SELECT 1' >/dev/null; t1=$(now)
    echo $((t1 - t0)) >>"$dir/client"

    t0=$(now); path=$(client 'SELECT jemsafe_dump()'); t1=$(now)
    case "$path" in *.sql.heap) test -f "$path" ;; *) echo "jemsafe_dump() gave: $path"; exit 1 ;; esac
    echo $((t1 - t0)) >>"$dir/sql"

    before=$(count usr1)
    t0=$(now); kill -USR1 "$pid"
    until [ "$(count usr1)" -gt "$before" ]; do :; done
    t1=$(now)
    echo $((t1 - t0)) >>"$dir/usr1"
done

# And n calls in one connection: NOW(6) is each statement's start, so the next one's
# start bounds a call's time without the client's start-up.
script=""
for _ in $(seq 1 "$n"); do script="${script}SELECT UNIX_TIMESTAMP(NOW(6)), jemsafe_dump();"; done
client "${script}SELECT UNIX_TIMESTAMP(NOW(6)), 'end';" |
    awk -F'\t' 'NR > 1 {printf "%d\n", ($1 - last) * 1e9} {last = $1}' >"$dir/session"

stats() { # file of nanoseconds: median, p90, min in ms
    sort -n "$1" | awk '{v[NR] = $1} END {
        printf "median %7.2f ms   p90 %7.2f ms   min %7.2f ms\n",
            v[int((NR + 1) / 2)] / 1e6, v[int(NR * 0.9 + 0.5)] / 1e6, v[1] / 1e6 }'
}
echo "$n of each, $(basename "$build") build, $(grep -o 'Ver [^ ]*' <<<"$("$(sed -n 's/^path = "\(.*\)"/\1/p' "$dir/bench.toml" | head -1)" --version)")"
printf "SELECT jemsafe_dump()   %s\n" "$(stats "$dir/sql")"
printf "  in one connection     %s\n" "$(stats "$dir/session")"
printf "kill -USR1 + the file   %s\n" "$(stats "$dir/usr1")"
printf "SELECT 1 (client alone) %s\n" "$(stats "$dir/client")"
echo "dumps written: $(count sql) sql, $(count usr1) usr1"
