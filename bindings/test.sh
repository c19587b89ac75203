#!/usr/bin/env bash
# Tests the bindings end to end: generates Kotlin, Swift and Python from the built library,
# installs pytest into a virtual environment (target/pyenv-ffi, reused across runs), then runs
# the Python tests against the real shared library and the checks that the Kotlin and Swift
# files export the whole API.
set -euo pipefail
cd "$(dirname "$0")/.."

bindings/generate.sh

venv=target/pyenv-ffi
requirements=bindings/tests/requirements.txt
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
fi

PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest bindings/tests -q -p no:cacheprovider "$@"
