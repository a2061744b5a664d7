#!/usr/bin/env bash
# `jemsafe page` on a real MariaDB series: page size and render time for N dumps (default
# 50) of a sandboxed MariaDB doing real work (tables created, rows inserted and selected)
# while the project's test UDF leaks 4 MiB between dumps; then the same with a tight
# --max-entries, to show what happens past the size bound.
#
#   bench/page.sh          (as root; needs mariadb-server, gcc; N=50 by default)
#   LG=12 bench/page.sh    sample every 4 KiB from the start instead of the leak profile's
#                          512 KiB (many more distinct stacks per dump: a worst case)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-50}
cargo build --release --quiet --workspace
JEMSAFE=$PWD/target/release/jemsafe
work=$(mktemp -d /tmp/jemsafe-bench-page.XXXXXX)
chmod 755 "$work"
js_pid=
cleanup() {
    if [ -n "$js_pid" ]; then kill -TERM "$js_pid" 2>/dev/null || true; wait "$js_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/plugins"
gcc -shared -fPIC -O2 -g -o "$work/plugins/jemsafe_test_udf.so" tests/udf/jemsafe_test_udf.c
chmod 755 "$work/plugins"; chmod 644 "$work/plugins/jemsafe_test_udf.so"
sock=$work/sb/mysqld/mysqld.sock
cfg=$work/sb/jemsafe.toml
wait_ready() {
    for _ in $(seq 600); do
        mariadb --socket="$sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.3
    done
    tail -20 "$work/sandbox.log"; exit 1
}
# The sandbox makes the datadir and config; then jemsafe runs it with the profile asked for.
"$JEMSAFE" sandbox "$work/sb" >"$work/sandbox.log" 2>&1 &
js_pid=$!
wait_ready
kill -TERM "$js_pid"; wait "$js_pid" || true
printf '\n[profiles.bench]\ninherits = "leak"\nlg_prof_sample = %s\n' "${LG:-19}" >>"$cfg"
"$JEMSAFE" run -c "$cfg" -p bench -- --plugin-dir="$work/plugins" >>"$work/sandbox.log" 2>&1 &
js_pid=$!
wait_ready
sql() { mariadb --socket="$sock" -uroot --batch --skip-column-names -e "$1"; }
sql "CREATE OR REPLACE FUNCTION jemsafe_leak_kb RETURNS INTEGER SONAME 'jemsafe_test_udf.so'"
sql "CREATE DATABASE IF NOT EXISTS b; CREATE TABLE IF NOT EXISTS b.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(200), KEY(v)) ENGINE=InnoDB"
for i in $(seq "$N"); do
    sql "USE b; INSERT INTO b.t (v) SELECT REPEAT(MD5(RAND()), 6) FROM seq_1_to_500; SELECT COUNT(*), MAX(v) FROM b.t GROUP BY LEFT(v, 2) LIMIT 1; SELECT jemsafe_leak_kb(4096)" >/dev/null
    "$JEMSAFE" dump -c "$cfg" >/dev/null
    sleep 1.05
done
echo "dumps: $(ls "$work/sb/dumps"/*.heap | wc -l), stack lines in the newest: $(grep -c '^@' "$(ls "$work/sb/dumps"/*.heap | tail -1)")"
page() {
    local out=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    "$JEMSAFE" --log-level warn page -c "$cfg" --offline -o "$out" "$@"
    t1=$(date +%s.%N)
    printf '%-28s %8d KiB  (gzip %6d KiB)  %.2f s\n' "$(basename "$out") $*" \
        $(( $(stat -c %s "$out") / 1024 )) $(( $(gzip -c "$out" | wc -c) / 1024 )) "$(echo "$t1 - $t0" | bc)"
}
page "$work/page.html"
page "$work/page-bounded.html" --max-entries 3000
grep -o 'the [0-9]* oldest of [0-9]* dumps are summarised' "$work/page-bounded.html" || echo "(no dump summarised)"
