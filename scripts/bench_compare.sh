#!/usr/bin/env bash
# Runs `sync_bench` and `bench --only crmsync` on a base revision and on the working tree, in
# one script, alternating base and head run by run so that drift of the machine (heat, other
# load) falls on both alike, and prints per metric the median of each side and head/base.
#
# Usage: scripts/bench_compare.sh BASE_REV [RUNS (default 5)] [RECORDS (default 20000)]
#
# The base is checked out in a worktree under target/bench-base; both builds share one target
# directory with the working tree (target/), so the dependencies are compiled once.
set -euo pipefail
cd "$(dirname "$0")/.."
base_rev=${1:?usage: scripts/bench_compare.sh BASE_REV [RUNS] [RECORDS]}
runs=${2:-5}
records=${3:-20000}
root=$PWD
export CARGO_TARGET_DIR=$root/target
out=$root/target/bench-compare
rm -rf "$out" && mkdir -p "$out/bin/base" "$out/bin/head" "$out/runs"

build() { # $1 = source tree, $2 = where the binaries go
    (cd "$1" && cargo build --release -p crmsync --example sync_bench --example bench)
    cp "$CARGO_TARGET_DIR/release/examples/sync_bench" "$CARGO_TARGET_DIR/release/examples/bench" "$2/"
}

worktree=$root/target/bench-base
git worktree remove --force "$worktree" 2>/dev/null || rm -rf "$worktree"
git worktree add --detach "$worktree" "$base_rev" >/dev/null
build "$worktree" "$out/bin/base"
build "$root" "$out/bin/head"
git worktree remove --force "$worktree"

for run in $(seq 1 "$runs"); do
    for side in base head; do
        echo "run $run/$runs: $side" >&2
        dir=$(mktemp -d)
        "$out/bin/$side/sync_bench" --records "$records" >"$out/runs/sync-$side-$run.txt"
        "$out/bin/$side/bench" --only crmsync --records "$records" --dir "$dir" \
            >"$out/runs/bench-$side-$run.txt" 2>/dev/null
        rm -rf "$dir"
    done
done
python3 scripts/bench_compare.py "$out/runs" "$base_rev" "$records"
