#!/usr/bin/env bash
# Inner-training throughput, hyperctl (burn flex) vs PyTorch CPU, both on 1 thread, same machine,
# same run, for the three cases of experiments/bench/README.md (mlp, tabular, cnn). Repeats the
# pair of measurements ROUNDS times, alternating, so that both see the same machine load.
# Usage: bash experiments/bench/run.sh [STEPS] [REPEATS] [ROUNDS]
# Writes experiments/bench/results/inner_training.json. PyTorch is measured only when
# experiments/bench/.venv exists (make it with setup_venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-2000}
repeats=${2:-5}
rounds=${3:-3}
cargo build --release -q -p hyperctl-tasks --example bench_train
torch=experiments/bench/.venv/bin/python
[ -x "$torch" ] || { echo "PyTorch not measured: run experiments/bench/setup_venv.sh first" >&2; torch=""; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for round in $(seq "$rounds"); do
  for case in mlp tabular cnn; do
    # The CNN is ~20x slower per step: a tenth of the steps.
    n=$([ "$case" = cnn ] && echo $((steps / 10)) || echo "$steps")
    RAYON_NUM_THREADS=1 ./target/release/examples/bench_train "$case" "$n" "$repeats" >> "$out"
    if [ -n "$torch" ]; then
      OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$torch" experiments/bench/torch_bench.py "$case" "$n" "$repeats" >> "$out"
    fi
  done
done
mkdir -p experiments/bench/results
python3 - "$out" experiments/bench/results/inner_training.json <<'PY'
import datetime, json, os, platform, statistics, subprocess, sys
records = [json.loads(line) for line in open(sys.argv[1])]
cases = {}
for case in ("mlp", "tabular", "cnn"):
    ours = [r["steps_per_s_median"] for r in records if r["benchmark"] == f"trainer_{case}"]
    plain = [r["plain_steps_per_s_median"] for r in records if r["benchmark"] == f"torch_{case}"]
    norms = [r["with_norms_steps_per_s_median"] for r in records if r["benchmark"] == f"torch_{case}"]
    c = {"hyperctl_steps_per_s": ours}
    if norms:
        # Ratio per round (both measured back to back), then the median over rounds.
        c["torch_plain_steps_per_s"] = plain
        c["torch_with_norms_steps_per_s"] = norms
        c["ratio_vs_torch_with_norms"] = statistics.median(o / t for o, t in zip(ours, norms))
        c["ratio_vs_torch_plain"] = statistics.median(o / t for o, t in zip(ours, plain))
    cases[case] = c
torch_version = next((r["torch"] for r in records if "torch" in r), None)
summary = {
    "benchmark": "inner_training", "date": datetime.date.today().isoformat(),
    "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
    "git_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "backend": "flex", "threads": 1, "torch": torch_version, "cases": cases, "records": records,
}
tmp = sys.argv[2] + ".tmp"
json.dump(summary, open(tmp, "w"), indent=1)
os.replace(tmp, sys.argv[2])
for case, c in cases.items():
    line = f"{case:8s} hyperctl {statistics.median(c['hyperctl_steps_per_s']):8.0f} steps/s"
    if "ratio_vs_torch_with_norms" in c:
        line += (f"; torch plain {statistics.median(c['torch_plain_steps_per_s']):8.0f}, with norms "
                 f"{statistics.median(c['torch_with_norms_steps_per_s']):8.0f}; ratio vs with norms "
                 f"{c['ratio_vs_torch_with_norms']:.2f}, vs plain {c['ratio_vs_torch_plain']:.2f}")
    print(line)
PY
