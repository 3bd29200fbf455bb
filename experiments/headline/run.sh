#!/usr/bin/env bash
# The headline comparison (issue 7). Run from the repository root with ../shared/data beside the
# checkout; every step resumes from what its --out folder already holds.
set -euo pipefail
POLICY=${POLICY:-policies/default}
OUT=${OUT:-experiments/headline/run}
HC=./target/release/hyperctl
cargo build --release -p hyperctl
common=(--tasks experiments/headline/tasks.toml --data-dir ../shared/data --split held-out --seeds 5)

# 1. The policy, every schedule family from the same untuned start, the policy's replay, six fixed
#    families tuned on meta-train (16 lrs x momentum {0, 0.9}: 176 configurations, 64 tasks), and
#    the per-task-and-seed oracle over cosine's 32-configuration grid.
$HC compare "${common[@]}" --untuned-starts --out "$OUT" \
    --controller "policy:$POLICY" --controller constant --controller cosine \
    --controller warmup-cosine --controller onecycle --controller plateau \
    --controller simple-reactive --controller hypergradient \
    --replay "policy:$POLICY" \
    --tune-on meta-train --tune-lrs 16 --tune-max-tasks 64 --tune-seeds 1 \
    --tune constant --tune step --tune exponential --tune cosine --tune warmup-cosine --tune onecycle \
    --oracle --oracle-from cosine

# 2. Starting-lr sweep: every task × seed starts from the tuned best single schedule's lr × 0.01,
#    0.1, 1 and 10 (with its momentum); the policy and that schedule's family (same shape, lr
#    from the start) run from there.
read -r BEST_LR BEST_M BEST_FAMILY < <(python3 - "$OUT/tune/chosen.json" <<'PY'
import json, sys
best = [c for c in json.load(open(sys.argv[1])) if c["best_single"]][0]
name, params = best["chosen"].split(":", 1)
kv = dict(p.split("=") for p in params.split(","))
print(kv.get("lr", kv.get("max_lr")), kv.get("momentum", "0.9" if name == "onecycle" else "0"), name)
PY
)
for f in 0.01 0.1 1 10; do
    lr=$(python3 -c "print(f'{$BEST_LR * $f:.4g}')")
    $HC compare "${common[@]}" --start-lr "$lr" --start-momentum "$BEST_M" \
        --out "experiments/headline/sweep-x$f" \
        --controller "policy:$POLICY" --controller "$BEST_FAMILY"
done

# 3. The targets, the headline table and plot.
python3 experiments/headline/targets.py experiments/headline
