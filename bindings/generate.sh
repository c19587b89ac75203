#!/usr/bin/env bash
# Builds the crmsync-ffi shared library and writes the Kotlin, Swift and Python bindings to
# bindings/generated/{kotlin,swift,python}/ (not committed). The Python directory also gets a
# copy of the shared library, so `import crmsync` works with it on sys.path.
#
# Usage: bindings/generate.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
flags=()
if [[ "${1:-}" == "--release" ]]; then
    profile=release
    flags=(--release)
fi

# The library and the bindgen (a crate of its own, so that building crmsync-ffi alone, as
# cargo-ndk and the iOS builds do, never compiles the bindgen), built workspace-wide with the
# examples: that selection resolves dependency features exactly as `cargo test --workspace`
# does, so after it (as in CI) this step only links, instead of rebuilding the core, tantivy
# and the bindgen with other features.
cargo build --workspace --lib --bins --examples
if [[ $profile == release ]]; then
    cargo build -p crmsync-ffi --lib "${flags[@]}"
fi

case "$(uname -s)" in
    Darwin) lib="target/$profile/libcrmsync_ffi.dylib" ;;
    *) lib="target/$profile/libcrmsync_ffi.so" ;;
esac
out=bindings/generated
rm -rf "$out"
for language in kotlin swift python; do
    target/debug/uniffi-bindgen generate "$lib" --language "$language" \
        --out-dir "$out/$language" --no-format --metadata-no-deps
done
cp "$lib" "$out/python/"
echo "bindings for $lib written to $out/{kotlin,swift,python}"
