#!/usr/bin/env bash
# bench/sysbench.sh: what does running mariadbd under jemsafe cost?
#
# sysbench oltp_read_write against one MariaDB datadir (Unix socket, root, no password),
# in up to four configurations, each started fresh for every run:
#   (a) baseline: mariadbd started directly, LD_PRELOAD/MALLOC_CONF from `jemsafe env`
#   (b) jemsafe:  `jemsafe run` with the same profile (adds the shim and its idle thread)
#   (c) dumping:  (b) plus `kill -USR1 <jemsafe pid>` once a second during the whole run
#   (d) bundled:  (b) with [jemalloc] library = "bundled" (jemsafe's own jemalloc,
#                 libjemsafe_jemalloc.so, instead of the system libjemalloc and the shim)
# Runs alternate a,b,c,d,a,b,c,d... so that drift and noise spread over all of them.
#
# Environment:
#   BENCH_CONFIGS  which configurations, in run order (abcd); e.g. "bd" compares the
#                  bundled jemalloc with the system one side by side
#   BENCH_SECONDS  sysbench --time per run (60)      BENCH_ROUNDS   runs per configuration (2)
#   BENCH_PROFILE  jemsafe profile (leak)            BENCH_OUT      results dir (new mktemp -d)
#   BENCH_READY_TIMEOUT / BENCH_STOP_TIMEOUT  bounded waits for start / stop, s (120 / 120)
#   BENCH_KEEP=1   keep the sandbox dir (datadir, heap dumps) instead of removing it
#   JEMSAFE        jemsafe binary (target/release/jemsafe of this repo)
#
# Exit status: 0 when the benchmark ran (whatever the targets say), non-zero when
# something broke. Every process started here is stopped on exit, failure or signal.
set -Eeuo pipefail

BENCH_SECONDS=${BENCH_SECONDS:-60}
BENCH_ROUNDS=${BENCH_ROUNDS:-2}
BENCH_PROFILE=${BENCH_PROFILE:-leak}
BENCH_CONFIGS=${BENCH_CONFIGS:-abcd}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-120}
STOP_TIMEOUT=${BENCH_STOP_TIMEOUT:-120}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JEMSAFE=${JEMSAFE:-$ROOT/target/release/jemsafe}

TABLES=4
TABLE_SIZE=20000
THREADS=4

say() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    say "FAILED: $*"
    exit 1
}

for v in BENCH_SECONDS BENCH_ROUNDS READY_TIMEOUT STOP_TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
[[ $BENCH_CONFIGS =~ ^[abcd]+$ ]] || die "BENCH_CONFIGS must be letters of abcd, not '$BENCH_CONFIGS'"
[[ -x $JEMSAFE ]] || die "$JEMSAFE not found: build it with 'cargo build --release --workspace'"
for tool in sysbench mariadb python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
python3 -c 'import tomllib' 2>/dev/null || die "python3 >= 3.11 (tomllib) is needed"

# Whatever the caller preloads would end up in some configurations and not others.
for v in LD_PRELOAD MALLOC_CONF _RJEM_MALLOC_CONF; do
    if [[ -n ${!v:-} ]]; then
        say "warning: ignoring $v=${!v} from the environment"
        unset "$v"
    fi
done

if [[ -n ${BENCH_OUT:-} ]]; then
    OUT=$BENCH_OUT
    mkdir -p "$OUT"
else
    OUT=$(mktemp -d /tmp/jemsafe-bench-out.XXXXXX)
fi
OUT=$(cd "$OUT" && pwd)
# Short on purpose: the socket path lives under it (sun_path: 107 bytes).
DIR=$(mktemp -d /tmp/jemsafe-bench.XXXXXX)
chmod 755 "$DIR" # mysqld runs as the mysql user and must reach the sandbox in it
TOML=$DIR/jemsafe.toml
BUNDLED_TOML=$DIR/jemsafe-bundled.toml
RESULTS=$OUT/results.tsv # cfg round tps max_ms
DUMPS=$OUT/dumps.tsv     # round rt_ms dump_us bytes
: >"$RESULTS"
: >"$DUMPS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "results and raw logs: $OUT"
say "sandbox: $DIR"

# ---------------------------------------------------------------- processes and cleanup

SRV_PID=""  # what we started: jemsafe, or mariadbd in (a)
SRV_KIND="" # jemsafe | mysqld
SRV_LOG=""
SB_PID=""
DUMPER_PID=""

# Alive and not a zombie.
alive() {
    local pid=$1 state
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $state != Z ]]
}

# mariadbd under jemsafe, from jemsafe's log, only while it still runs in our sandbox
# (a pid can be reused): jemsafe puts it in its own process group, so it would survive
# a jemsafe that had to be SIGKILLed.
mysqld_child_pid() {
    local pid
    [[ -n $SRV_LOG && -f $SRV_LOG ]] || return 1
    pid=$(sed -nE 's/.* info: started mysqld pid ([0-9]+):.*/\1/p' "$SRV_LOG" | tail -n1)
    [[ -n $pid ]] && alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/" || return 1
    echo "$pid"
}

# Waits (bounded) for pid to go away; returns 1 on timeout.
wait_gone() {
    local pid=$1 timeout=$2 deadline=$((SECONDS + $2))
    while alive "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

stop_dumper() {
    if [[ -n $DUMPER_PID ]]; then
        kill -TERM "$DUMPER_PID" 2>/dev/null || true
        wait "$DUMPER_PID" 2>/dev/null || true
        DUMPER_PID=""
    fi
}

# SIGTERM to what we started, bounded wait, then its exit status. Returns non-zero when
# it did not stop in time (it is then SIGKILLed) or did not exit with status 0.
stop_server() {
    [[ -n $SRV_PID ]] || return 0
    local pid=$SRV_PID child="" rc=0
    [[ $SRV_KIND == jemsafe ]] && child=$(mysqld_child_pid || true)
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
            say "$SRV_KIND pid $pid did not stop within ${STOP_TIMEOUT}s of SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            rc=1
        fi
    fi
    wait "$pid" 2>/dev/null || rc=$?
    if [[ -n $child ]] && alive "$child"; then
        say "mysqld pid $child outlived jemsafe: SIGTERM"
        kill -TERM "$child" 2>/dev/null || true
        wait_gone "$child" "$STOP_TIMEOUT" || kill -KILL "$child" 2>/dev/null || true
        rc=1
    fi
    SRV_PID=""
    return "$rc"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    stop_dumper
    if [[ -n $SB_PID ]]; then
        kill -TERM "$SB_PID" 2>/dev/null
        wait_gone "$SB_PID" 10 || kill -KILL "$SB_PID" 2>/dev/null
        wait "$SB_PID" 2>/dev/null
    fi
    if [[ -n $SRV_PID ]]; then
        alive "$SRV_PID" && say "stopping $SRV_KIND pid $SRV_PID"
        stop_server
    fi
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        say "kept the sandbox in $DIR"
    else
        rm -rf -- "$DIR"
    fi
    ((rc == 0)) || say "exit status $rc; raw logs are in $OUT"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------- helpers

# [mysqld] path / args / env of jemsafe.toml, NUL-separated, into a file.
toml_field() {
    python3 - "$TOML" "$1" >"$2" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    m = tomllib.load(f).get("mysqld", {})
what = sys.argv[2]
if what == "path":
    items = [m["path"]] if m.get("path") else []
elif what == "args":
    items = [str(a) for a in m.get("args", [])]
else:
    items = [f"{k}={v}" for k, v in m.get("env", {}).items()]
sys.stdout.write("".join(i + "\0" for i in items))
EOF
}

client() { mariadb --no-defaults --socket="$SOCKET" -uroot --batch --skip-column-names "$@"; }

# Until the log says "ready for connections" and the socket answers SELECT 1 (with
# jemsafe, also until it logged the outcome of its verification), bounded.
wait_ready() {
    local what=$1 need_verified=$2 deadline=$((SECONDS + READY_TIMEOUT))
    while :; do
        alive "$SRV_PID" || die "$what: $SRV_KIND exited while starting; see $SRV_LOG"
        if grep -q 'verification FAILED' "$SRV_LOG"; then
            die "$what: jemsafe could not verify profiling in mysqld; see $SRV_LOG"
        fi
        if grep -q 'ready for connections' "$SRV_LOG" &&
            { [[ $need_verified == no ]] || grep -q ' info: verified: mysqld pid' "$SRV_LOG"; } &&
            [[ $(client -e 'SELECT 1' 2>/dev/null) == 1 ]]; then
            break
        fi
        ((SECONDS < deadline)) || die "$what: not ready within ${READY_TIMEOUT}s; see $SRV_LOG"
        sleep 0.2
    done
    # InnoDB reloads its buffer pool in the background after "ready": let it finish so
    # that no run starts colder than another (bounded; a warning only).
    local status=""
    while :; do
        status=$(client -e "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_LOAD_STATUS'" 2>/dev/null || true)
        [[ $status == *completed* || $status == *aborted* || $status == *"not started"* || -z $status ]] && break
        if ((SECONDS >= deadline)); then
            say "warning: $what: buffer pool load still running ($status); going on"
            break
        fi
        sleep 0.2
    done
}

start_jemsafe() { # label log [config]
    SRV_KIND=jemsafe
    SRV_LOG=$2
    "$JEMSAFE" run -c "${3:-$TOML}" -p "$BENCH_PROFILE" </dev/null >"$SRV_LOG" 2>&1 &
    SRV_PID=$!
    wait_ready "$1" yes
}

start_baseline() { # label log
    SRV_KIND=mysqld
    SRV_LOG=$2
    {
        printf '# baseline: env'
        printf ' %q' "${MYSQLD_ENV[@]}" "LD_PRELOAD=$BASE_PRELOAD" "MALLOC_CONF=$BASE_MALLOC_CONF" "$MYSQLD" "${MYSQLD_ARGS[@]}"
        printf '\n'
    } >"$SRV_LOG"
    env "${MYSQLD_ENV[@]}" LD_PRELOAD="$BASE_PRELOAD" MALLOC_CONF="$BASE_MALLOC_CONF" \
        "$MYSQLD" "${MYSQLD_ARGS[@]}" </dev/null >>"$SRV_LOG" 2>&1 &
    SRV_PID=$!
    wait_ready "$1" no
    # The baseline must have jemalloc and only jemalloc: no shim.
    local lib libs
    IFS=': ' read -ra libs <<<"$BASE_PRELOAD"
    for lib in "${libs[@]}"; do
        [[ -n $lib ]] || continue
        grep -qF -- "$(readlink -f "$lib")" "/proc/$SRV_PID/maps" ||
            die "$1: $lib (LD_PRELOAD) is not mapped in mariadbd pid $SRV_PID; see $SRV_LOG"
    done
    if grep -q 'libjemsafe_shim' "/proc/$SRV_PID/maps"; then
        die "$1: the shim is loaded in the baseline mariadbd pid $SRV_PID"
    fi
}

SB_BASE=(sysbench oltp_read_write --db-driver=mysql --mysql-user=root --mysql-db=sbtest
    --tables=$TABLES --table-size=$TABLE_SIZE --threads=$THREADS)

# sysbench in the background (a simple command, so $! is sysbench itself), so that a
# signal to this script is handled at once.
run_sysbench() { # log args...
    local log=$1 rc=0
    shift
    "${SB_BASE[@]}" --mysql-socket="$SOCKET" "$@" </dev/null >"$log" 2>&1 &
    SB_PID=$!
    wait "$SB_PID" || rc=$?
    SB_PID=""
    ((rc == 0)) || die "sysbench exited with status $rc; see $log"
}

# kill -USR1 to jemsafe once a second until stopped; one line per signal sent.
start_dumper() { # jemsafe-pid log
    local jpid=$1 log=$2
    (
        sp=""
        trap '[[ -n $sp ]] && kill "$sp" 2>/dev/null && wait "$sp"; exit 0' TERM
        while kill -USR1 "$jpid" 2>/dev/null; do
            echo "$EPOCHREALTIME" >>"$log"
            sleep 1 &
            sp=$!
            wait "$sp" || true
            sp=""
        done
    ) &
    DUMPER_PID=$!
}

# ---------------------------------------------------------------- prepare

say "creating the sandbox and the sbtest tables (profile $BENCH_PROFILE)"
SRV_KIND=jemsafe
SRV_LOG=$OUT/prepare.server.log
"$JEMSAFE" sandbox "$DIR" -p "$BENCH_PROFILE" </dev/null >"$OUT/prepare.sandbox.out" 2>"$SRV_LOG" &
SRV_PID=$!
deadline=$((SECONDS + READY_TIMEOUT))
until [[ -s $TOML ]] && grep -q 'started mysqld pid' "$SRV_LOG"; do
    alive "$SRV_PID" || die "jemsafe sandbox exited; see $SRV_LOG"
    ((SECONDS < deadline)) || die "jemsafe sandbox wrote no config within ${READY_TIMEOUT}s; see $SRV_LOG"
    sleep 0.2
done
cp "$TOML" "$OUT/jemsafe.toml"
# (d): the same sandbox config with jemsafe's own jemalloc.
{
    cat "$TOML"
    printf '\n[jemalloc]\nlibrary = "bundled"\n'
} >"$BUNDLED_TOML"

toml_field args "$OUT/.args" || die "cannot read [mysqld] args from $TOML"
mapfile -d '' MYSQLD_ARGS <"$OUT/.args"
toml_field env "$OUT/.env" || die "cannot read [mysqld] env from $TOML"
mapfile -d '' MYSQLD_ENV <"$OUT/.env"
toml_field path "$OUT/.path" || die "cannot read [mysqld] path from $TOML"
mapfile -d '' TOML_PATH <"$OUT/.path"
rm -f "$OUT/.args" "$OUT/.env" "$OUT/.path"
((${#MYSQLD_ARGS[@]} > 0)) || die "no [mysqld] args in $TOML"
SOCKET=""
for a in "${MYSQLD_ARGS[@]}"; do
    [[ $a == --socket=* ]] && SOCKET=${a#--socket=}
done
[[ -n $SOCKET ]] || die "no --socket= in the [mysqld] args of $TOML"
# The binary jemsafe really started (the config may leave path to jemsafe's search).
MYSQLD=$(sed -nE 's/.* info: started mysqld pid [0-9]+: (.*) with profile .*/\1/p' "$SRV_LOG" | head -n1)
[[ -n $MYSQLD ]] || MYSQLD=${TOML_PATH[0]:-}
[[ -x $MYSQLD ]] || die "cannot tell which mysqld jemsafe runs (got '$MYSQLD')"

wait_ready "prepare" yes
client -e 'CREATE DATABASE IF NOT EXISTS sbtest' || die "cannot create database sbtest"
MARIADB_VERSION=$(client -e 'SELECT VERSION()')
say "sysbench prepare: $TABLES tables x $TABLE_SIZE rows"
run_sysbench "$OUT/prepare.sysbench.log" prepare
stop_server || die "the sandbox did not stop cleanly; see $OUT/prepare.server.log"

# Baseline environment, exactly as `jemsafe env` prints it (single-quoted for sh).
"$JEMSAFE" env -c "$TOML" -p "$BENCH_PROFILE" >"$OUT/jemsafe-env.txt" 2>&1 ||
    die "jemsafe env failed; see $OUT/jemsafe-env.txt"
BASE_PRELOAD=""
BASE_MALLOC_CONF=""
while IFS= read -r line; do
    case $line in
    LD_PRELOAD=\'*\') eval "BASE_PRELOAD=${line#LD_PRELOAD=}" ;;
    MALLOC_CONF=\'*\') eval "BASE_MALLOC_CONF=${line#MALLOC_CONF=}" ;;
    esac
done <"$OUT/jemsafe-env.txt"
[[ -n $BASE_PRELOAD && -n $BASE_MALLOC_CONF ]] ||
    die "no LD_PRELOAD/MALLOC_CONF in the output of jemsafe env; see $OUT/jemsafe-env.txt"
RUN_MALLOC_CONF=$(sed -nE 's/.* info: started mysqld pid [0-9]+: .* MALLOC_CONF=(.*)$/\1/p' "$OUT/prepare.server.log" | head -n1)
if [[ $RUN_MALLOC_CONF != "$BASE_MALLOC_CONF" ]]; then
    say "warning: jemsafe env says MALLOC_CONF=$BASE_MALLOC_CONF but jemsafe run used $RUN_MALLOC_CONF"
fi

# ---------------------------------------------------------------- the runs

SB_ARGS=(--time="$BENCH_SECONDS" --report-interval=1 run)
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    for ((ci = 0; ci < ${#BENCH_CONFIGS}; ci++)); do
        cfg=${BENCH_CONFIGS:ci:1}
        label="round $round/$BENCH_ROUNDS ($cfg)"
        slog=$OUT/r$round-$cfg.server.log
        blog=$OUT/r$round-$cfg.sysbench.log
        case $cfg in
        a) start_baseline "$label" "$slog" ;;
        d)
            start_jemsafe "$label" "$slog" "$BUNDLED_TOML"
            grep -q ' (bundled, the shim inside); ' "$slog" ||
                die "$label: mysqld does not run the bundled jemalloc; see $slog"
            ;;
        *) start_jemsafe "$label" "$slog" ;;
        esac
        what="${BENCH_SECONDS}s of sysbench oltp_read_write"
        [[ $cfg == c ]] && what+=", kill -USR1 $SRV_PID once a second"
        say "$label: $what"
        if [[ $cfg == c ]]; then
            start_dumper "$SRV_PID" "$OUT/r$round-c.usr1.log"
        fi
        run_sysbench "$blog" "${SB_ARGS[@]}"
        stop_dumper
        stop_server || die "$label: the server did not stop cleanly; see $slog"

        tps=$(sed -nE 's/^ *transactions: *[0-9]+ +\(([0-9.]+) per sec\.\).*/\1/p' "$blog")
        maxlat=$(awk '/^Latency \(ms\):/ { l = 1 } l && $1 == "max:" { print $2; exit }' "$blog")
        [[ -n $tps && -n $maxlat ]] || die "$label: cannot find tps / max latency in $blog"
        printf '%s\t%s\t%s\t%s\n' "$cfg" "$round" "$tps" "$maxlat" >>"$RESULTS"
        if grep -q '^<jemalloc>' "$slog"; then
            say "warning: $label: jemalloc complained (<jemalloc> lines in $slog)"
        fi
        if [[ $cfg == c ]]; then
            # "(N bytes; prof.dump N us, round trip X ms)"; newer jemsafe adds the trigger
            # after the size: "(N bytes; usr1; prof.dump ...)".
            sed -nE 's/.* info: heap dump written: .* \(([0-9]+) bytes; ([^;]*; )?prof\.dump ([0-9?]+) us, round trip ([0-9.]+) ms\)$/\4\t\3\t\1/p' "$slog" |
                sed "s/^/$round\t/" >>"$DUMPS"
        fi
        say "$label: $tps tps, max latency $maxlat ms"
    done
done

# ---------------------------------------------------------------- report

JEMALLOC_VERSION=$(cat "$OUT"/r*-[bcd].server.log 2>/dev/null | sed -nE 's/.* info: verified: mysqld pid [0-9]+ runs jemalloc ([^ ]+) from [^ ]+ with the shim.*/\1/p' | head -n1)
BUNDLED_VERSION=$(cat "$OUT"/r*-d.server.log 2>/dev/null | sed -nE 's/.* info: verified: mysqld pid [0-9]+ runs jemalloc ([^ ]+) from .*bundled.*/\1/p' | head -n1)
USR1_SENT=$(cat "$OUT"/r*-c.usr1.log 2>/dev/null | wc -l || true)
DUMP_FAILED=$(cat "$OUT"/r*-c.server.log 2>/dev/null | grep -cE 'heap dump to .* failed|dump refused|dump skipped|cannot reach the shim|cannot send to the shim' || true)
NPROC=$(nproc)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

export RESULTS DUMPS OUT MYSQLD MARIADB_VERSION JEMALLOC_VERSION BUNDLED_VERSION USR1_SENT DUMP_FAILED NPROC \
    LOAD_START LOAD_END \
    TABLES TABLE_SIZE THREADS BENCH_SECONDS BENCH_ROUNDS BENCH_PROFILE BASE_MALLOC_CONF
python3 - <<'PY' | tee "$OUT/report.txt"
import os, statistics

e = os.environ
rows = [l.rstrip("\n").split("\t") for l in open(e["RESULTS"]) if l.strip()]
names = {"a": "(a) baseline: mariadbd + jemalloc (LD_PRELOAD/MALLOC_CONF of `jemsafe env`), no jemsafe",
         "b": "(b) jemsafe run",
         "c": "(c) jemsafe run + kill -USR1 (heap dump) every second",
         "d": "(d) jemsafe run, [jemalloc] library = \"bundled\" (jemsafe's own jemalloc)"}
configs = [c for c in "abcd" if any(r[0] == c for r in rows)]
tps = {c: [float(r[2]) for r in rows if r[0] == c] for c in configs}
lat = {c: [float(r[3]) for r in rows if r[0] == c] for c in configs}
dumps = [l.rstrip("\n").split("\t") for l in open(e["DUMPS"]) if l.strip()]
rt = [float(d[1]) for d in dumps]
dus = [int(d[2]) for d in dumps if d[2].isdigit()]

print()
print("jemsafe sysbench benchmark")
print(f"  machine:  nproc {e['NPROC']}, MariaDB {e['MARIADB_VERSION']}, jemalloc {e['JEMALLOC_VERSION'] or 'unknown'}"
      + (f", bundled jemalloc {e['BUNDLED_VERSION']}" if e['BUNDLED_VERSION'] else ""))
print(f"  load avg: {e['LOAD_START']} before, {e['LOAD_END']} after (other work on the machine adds noise)")
print(f"  mysqld:   {e['MYSQLD']}")
print(f"  workload: sysbench oltp_read_write, {e['TABLES']} tables x {e['TABLE_SIZE']} rows, "
      f"{e['THREADS']} threads, Unix socket, {e['BENCH_SECONDS']} s per run, "
      f"{e['BENCH_ROUNDS']} round(s) in the order {','.join(configs)}")
print(f"  profile:  {e['BENCH_PROFILE']} (MALLOC_CONF={e['BASE_MALLOC_CONF']})")
for c in configs:
    print()
    print(names[c])
    print(f"  {'round':>5}  {'tps':>10}  {'max latency ms':>14}")
    for i, (t, l) in enumerate(zip(tps[c], lat[c]), 1):
        print(f"  {i:>5}  {t:>10.2f}  {l:>14.2f}")
    print(f"  {'mean':>5}  {statistics.mean(tps[c]):>10.2f}  {'worst ' + format(max(lat[c]), '.2f'):>14}")

if "c" in configs:
    print()
    print("(c) heap dumps")
    print(f"  SIGUSR1 sent {int(e['USR1_SENT'])}, dumps written {len(rt)}, failures logged {int(e['DUMP_FAILED'])}")
    if rt:
        print(f"  round trip (jemsafe):  median {statistics.median(rt):.2f} ms, worst {max(rt):.2f} ms")
    if dus:
        print(f"  prof.dump in mariadbd: median {statistics.median(dus):.0f} us, worst {max(dus)} us")

def verdict(ok):
    return "PASS" if ok else "FAIL"

print()
print("targets")
if "a" in configs and "b" in configs:
    ratio = statistics.mean(tps["b"]) / statistics.mean(tps["a"])
    print(f"  mean tps (b)/(a)        = {ratio:7.4f}     target >= 0.99   {verdict(ratio >= 0.99)}")
if "b" in configs and "c" in configs:
    lr = max(lat["c"]) / max(lat["b"])
    print(f"  worst latency (c)/(b)   = {lr:7.3f}     target <= 1.5    {verdict(lr <= 1.5)}")
if "c" in configs:
    if rt:
        m = statistics.median(rt)
        print(f"  dump round trip median  = {m:7.2f} ms  target <= 5 ms   {verdict(m <= 5)}")
    else:
        print("  dump round trip median  =     n/a     target <= 5 ms   FAIL (no dump was logged)")
if "b" in configs and "d" in configs:
    ratio = statistics.mean(tps["d"]) / statistics.mean(tps["b"])
    per_round = ", ".join(f"{d / b:.3f}" for b, d in zip(tps["b"], tps["d"]))
    print(f"  mean tps (d)/(b)        = {ratio:7.4f}     bundled vs system jemalloc, same profile "
          f"(per round: {per_round}; no target, compare with the noise between rounds)")
print()
print(f"raw logs: {e['OUT']}")
PY
