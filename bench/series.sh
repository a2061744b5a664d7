#!/usr/bin/env bash
# Issue 27's table: `jemsafe leaks` and `jemsafe page` on synthetic series of D dumps of S
# stacks (bench/gen-series.py: addresses in mariadbd's text, a growing subset of stacks),
# wall time and peak RSS (GNU time), for the binary of a fixed commit of main ("before",
# built from a `git worktree` of it) and this tree ("after"), in the same run. Then the
# speed of reading one dump (`jemsafe report`, symbolization included; best of 5).
#
#   bench/series.sh                        all rows (long: a 1000 x 20000 series is ~6 GB)
#   ROWS="10x5000 50x5000" bench/series.sh  some rows
#   BEFORE=<commit>                         the "before" commit (default 324c934, main
#                                           before issue 27)
#   MAX_BEFORE=N                            run "before" only where dumps x stacks <= N
#                                           (default 5000000: it holds every dump, ~600
#                                           bytes per stack and dump)
#   DEPTH=16                                frames per stack
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
BEFORE=${BEFORE:-324c934}
ROWS=${ROWS:-"10x5000 50x5000 200x5000 10x20000 50x20000 200x20000 1000x5000 1000x20000"}
MAX_BEFORE=${MAX_BEFORE:-5000000}
DEPTH=${DEPTH:-16}
work=$(mktemp -d /tmp/jemsafe-bench-series.XXXXXX)
tree=$work/before-tree
cleanup() {
    git -C "$root" worktree remove --force "$tree" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# "before" builds in a target directory of its own (cargo names a workspace's artefacts
# alike in any checkout, so a shared one would mix the two builds), seeded once from this
# tree's so that the dependencies are not built again.
before_target=$root/target/bench-before
if [ ! -d "$before_target/release" ] && [ -d target/release ]; then
    mkdir -p "$before_target"
    cp -a target/release "$before_target/"
fi
git worktree add --detach --quiet "$tree" "$BEFORE"
(cd "$tree" && CARGO_TARGET_DIR="$before_target" cargo build --release --quiet -p jemsafe --bin jemsafe)
cp "$before_target/release/jemsafe" "$work/jemsafe-before"
cargo build --release --quiet -p jemsafe --bin jemsafe
cargo build --release --quiet -p jemsafe-report --example load_speed
cp target/release/jemsafe "$work/jemsafe-after"
if cmp -s "$work/jemsafe-before" "$work/jemsafe-after"; then
    echo "the before and after binaries are the same file: the build did not happen" >&2
    exit 1
fi
echo "before: $(git rev-parse --short "$BEFORE"), after: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' + uncommitted changes')"

# One measured run: "<seconds> s, <MB> MB" (MB of peak RSS), or why there is none.
measure() {
    local out=$work/time.out
    if /usr/bin/time -f '%e %M' -o "$out" "$@" >/dev/null 2>"$work/stderr"; then
        awk '{ printf "%.2f s, %d MB", $1, $2 / 1024 }' "$out"
    else
        echo "failed ($(tail -1 "$work/stderr" | cut -c1-60))"
    fi
}

printf '| dumps | stacks | MB of dumps | leaks before | leaks after | page before | page after |\n'
printf '|---|---|---|---|---|---|---|\n'
for row in $ROWS; do
    d=${row%x*}
    s=${row#*x}
    dir=$work/series-$row
    python3 bench/gen-series.py "$dir" "$d" "$s" "$DEPTH"
    mb=$(du -sm "$dir" | cut -f1)
    cells=()
    for cmd in leaks page; do
        for which in before after; do
            if [ "$which" = before ] && [ $((d * s)) -gt "$MAX_BEFORE" ]; then
                cells+=("not run")
                continue
            fi
            bin=$work/jemsafe-$which
            if [ "$cmd" = leaks ]; then
                cells+=("$(measure "$bin" leaks -c /nonexistent "$dir"/*.heap)")
            else
                cells+=("$(measure "$bin" page -c /nonexistent --offline -o "$work/page.html" "$dir"/*.heap)")
            fi
        done
    done
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$d" "$s" "$mb" "${cells[@]}"
    # Keep the newest dump of the first 5,000- and 20,000-stack series for the speed runs.
    for keep in 5000 20000; do
        if [ "$s" = "$keep" ] && [ ! -e "$work/one-$keep.heap" ]; then
            cp "$(ls "$dir"/*.heap | tail -1)" "$work/one-$keep.heap"
        fi
    done
    rm -rf "$dir"
done

echo
echo "Loading one dump (read and parse, no symbolization; best of 5):"
target/release/examples/load_speed "$work"/one-*.heap
echo
echo "Reading one dump (jemsafe report --format text, symbolization included; best of 5):"
for one in "$work"/one-*.heap; do
    [ -e "$one" ] || continue
    size=$(stat -c %s "$one")
    for which in before after; do
        best=
        for _ in 1 2 3 4 5; do
            t0=$(date +%s.%N)
            "$work/jemsafe-$which" report --format text "$one" >/dev/null 2>&1
            t1=$(date +%s.%N)
            t=$(echo "$t1 - $t0" | bc)
            if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
        done
        printf '  %-14s %-6s %5.1f MB in %4.0f ms: %5.0f MB/s\n' "$(basename "$one")" "$which" \
            "$(echo "$size / 1000000" | bc -l)" "$(echo "$best * 1000" | bc -l)" \
            "$(echo "$size / 1000000 / $best" | bc -l)"
    done
done
