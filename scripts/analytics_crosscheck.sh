#!/usr/bin/env bash
# Cross-checks the analytics against independent implementations (pandas, mlxtend,
# statsmodels): installs them into a virtual environment under target/, exports the inputs
# and results with the analytics_export example, and compares (analytics_crosscheck.py).
# Fails on any mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/pyenv
if ! "$venv/bin/python" -c "import pandas, mlxtend, statsmodels" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "pandas>=2.2,<4" "mlxtend>=0.23.2,<0.26" "statsmodels>=0.14,<0.16"
fi
"$venv/bin/python" -c "import pandas, mlxtend, statsmodels; print('pandas', pandas.__version__, '| mlxtend', mlxtend.__version__, '| statsmodels', statsmodels.__version__)"

out=target/analytics-crosscheck
rm -rf "$out"
# Built with the workspace's features (what `cargo test --workspace` already built): `-p crmsync`
# alone would resolve other features and rebuild tantivy and friends.
cargo build -q --workspace --example analytics_export
target/debug/examples/analytics_export "$out"
"$venv/bin/python" scripts/analytics_crosscheck.py "$out"
