#!/usr/bin/env bash
# Release measurements of the bindings: the size of the stripped shared library, and the
# per-call overhead of `get` through Python versus the same call in Rust, in one run.
set -euo pipefail
cd "$(dirname "$0")/.."

bindings/generate.sh --release
cargo build --release -p crmsync-ffi --example get_overhead

lib=target/release/libcrmsync_ffi.so
stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
strip -o "$stripped" "$lib"
echo "libcrmsync_ffi.so (release): $(stat -c %s "$lib") bytes, stripped: $(stat -c %s "$stripped") bytes ($(( $(stat -c %s "$stripped") / 1024 / 1024 )) MiB)"
echo "libcrmsync_ffi.a (release, for iOS before linking): $(stat -c %s target/release/libcrmsync_ffi.a) bytes"

PYTHONPATH=bindings/generated/python python3 bindings/bench_get.py target/release/examples/get_overhead
