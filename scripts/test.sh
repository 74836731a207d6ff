#!/usr/bin/env bash
# Install into .venv (CPU torch) and run the test suite, one pytest-xdist worker per core, each test file on one
# worker (its module fixtures built once). Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0 -e ".[test,onnx]"
exec .venv/bin/python -m pytest -q -n auto --dist loadfile "$@"
