"""Loads the generated Python module `crmsync` and its shared library.

`bindings/generate.sh` writes them to `bindings/generated/python/`; set CRMSYNC_PY_DIR to load
them from elsewhere (e.g. a release build).
"""

import os
import sys
import uuid
from pathlib import Path

import pytest

BINDINGS = Path(__file__).resolve().parent.parent
GENERATED = BINDINGS / "generated"
PY_DIR = Path(os.environ.get("CRMSYNC_PY_DIR", GENERATED / "python"))

if not (PY_DIR / "crmsync.py").exists():
    raise pytest.UsageError(
        f"{PY_DIR}/crmsync.py is missing: run bindings/generate.sh first"
    )
sys.path.insert(0, str(PY_DIR))


@pytest.fixture
def engine():
    import crmsync

    e = crmsync.Engine.in_memory()
    yield e
    e.close_database()


@pytest.fixture
def workspace():
    return str(uuid.uuid4())
