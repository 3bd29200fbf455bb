#!/usr/bin/env bash
# Builds the Python package into a fresh venv exactly as a user installs it
# (`pip install ./crates/python`) and runs its tests. The torch, Lightning and Hugging Face tests
# need those packages: HYPERCTL_TEST_TORCH=auto (the default) installs them from PyPI when the
# disk has room (PyPI's torch wheel brings CUDA libraries: 5.4 GB, 130 s here), =1 always, =0
# never; tests whose packages are missing skip, saying so. Then the package is rebuilt with the
# gym feature (compiles burn) and the Gymnasium env's tests run (HYPERCTL_TEST_GYM=0 skips that).
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
want="${HYPERCTL_TEST_TORCH:-auto}"
if [ "$want" = auto ]; then
    free_gb=$(df -Pk "$venv" | awk 'NR == 2 { print int($4 / 1048576) }')
    if [ "$free_gb" -ge 12 ]; then
        want=1
    else
        echo "SKIPPED: installing torch for its tests (${free_gb} GB free; it needs about 6)" >&2
        want=0
    fi
fi
if [ "$want" = 1 ]; then
    start=$(date +%s)
    if "$venv/bin/pip" install -q torch numpy lightning transformers accelerate; then
        echo "installed torch, lightning and transformers in $(( $(date +%s) - start )) s"
    else
        echo "SKIPPED: the torch tests (cannot install torch, lightning, transformers from PyPI)" >&2
    fi
fi
start=$(date +%s)
"$venv/bin/pip" install -q ./crates/python
echo "built and installed the package in $(( $(date +%s) - start )) s"
"$venv/bin/python" -m pytest -q -rs crates/python/tests
# hyperctl.gym wraps the Rust trainer (burn), so it is a build feature, not in the default wheel:
# rebuild with it, as its users install it, and run its tests (here a skip is a failure).
# HYPERCTL_TEST_GYM=0 leaves this out (the burn build takes minutes).
if [ "${HYPERCTL_TEST_GYM:-1}" = 1 ]; then
    if ! "$venv/bin/pip" install -q gymnasium; then
        echo "SKIPPED: the gym tests (cannot install gymnasium from PyPI)" >&2
        exit 0
    fi
    start=$(date +%s)
    MATURIN_PEP517_ARGS="--features gym" "$venv/bin/pip" install -q --force-reinstall --no-deps ./crates/python
    echo "built and installed the package with the gym feature in $(( $(date +%s) - start )) s"
    HYPERCTL_REQUIRE_GYM=1 "$venv/bin/python" -m pytest -q -rs crates/python/tests/test_gym.py
fi
