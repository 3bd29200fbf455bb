#!/usr/bin/env bash
# Builds the Python package into a fresh venv exactly as a user installs it
# (`pip install ./crates/python`) and runs its tests and the stdlib client's. Torch tests run when
# torch is importable in that venv (HYPERCTL_TEST_TORCH=1 installs it from PyPI: several GB),
# and skip, saying so, otherwise.
# Usage, from the repository root: bash crates/python/run_tests.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${1:-target/python-venv}"
rm -rf "$venv"
python3 -m venv "$venv"
if ! "$venv/bin/pip" install -q maturin pytest; then
    echo "SKIPPED: the Python package tests (cannot install maturin and pytest from PyPI)" >&2
    exit 0
fi
if [ "${HYPERCTL_TEST_TORCH:-0}" = 1 ]; then
    "$venv/bin/pip" install -q torch numpy
fi
start=$(date +%s)
"$venv/bin/pip" install -q ./crates/python
echo "built and installed the package in $(( $(date +%s) - start )) s"
"$venv/bin/python" -m pytest -q -rs crates/python/tests
