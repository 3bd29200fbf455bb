#!/usr/bin/env bash
# Creates experiments/bench/.venv with PyTorch (CPU use only) for the reference benchmark.
# PyPI's Linux torch wheel pulls CUDA libraries too (~3 GB); the benchmark uses only the CPU.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet "torch==2.11.0" numpy
.venv/bin/python -c "import torch; print('torch', torch.__version__)"
