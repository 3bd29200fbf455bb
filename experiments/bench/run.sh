#!/usr/bin/env bash
# Inner-training throughput, hyperctl (burn flex) vs PyTorch CPU, both on 1 thread, same machine,
# same run. Usage: bash experiments/bench/run.sh [STEPS] [REPEATS]
# PyTorch is measured only when experiments/bench/.venv exists (make it with setup_venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-2000}
repeats=${2:-5}
cargo build --release -q -p hyperctl-tasks --example bench_train
ours=$(RAYON_NUM_THREADS=1 ./target/release/examples/bench_train "$steps" "$repeats")
echo "$ours"
if [ -x experiments/bench/.venv/bin/python ]; then
  theirs=$(OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 experiments/bench/.venv/bin/python experiments/bench/torch_mlp.py "$steps" "$repeats")
  echo "$theirs"
  python3 - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
o = ours["steps_per_s_median"]
print(f"hyperctl {o:.0f} steps/s; torch plain {theirs['plain_steps_per_s_median']:.0f}, "
      f"with norms {theirs['with_norms_steps_per_s_median']:.0f}; ratio vs torch with norms "
      f"{o / theirs['with_norms_steps_per_s_median']:.2f}, vs plain {o / theirs['plain_steps_per_s_median']:.2f}")
PY
else
  echo "PyTorch not measured: run experiments/bench/setup_venv.sh first" >&2
fi
