#!/usr/bin/env bash
# The headline comparison (issue 7). Run from the repository root with ../shared/data beside the
# checkout; every step resumes from what its --out folder already holds. Compute on 2 cores:
# about 40 min for step 1 (half of it tuning), 10 min for step 2, 30 min for step 3.
# POLICY is the policy compared in run/ (the recorded run/ used v0, then at policies/default,
# now policies/default-v0); the shipped policy is added by run_policy.sh.
set -euo pipefail
POLICY=${POLICY:-policies/default-v0}
HC=./target/release/hyperctl
cargo build --release -p hyperctl
common=(--tasks experiments/headline/tasks.toml --data-dir ../shared/data --split held-out)

# 1. The policy, every schedule family from the same untuned start, the policy's replay, and six
#    fixed families tuned on meta-train (16 lrs x momentum {0, 0.9}: 176 configurations, on 64
#    tasks spread over meta-train, 1 seed), 5 seeds.
$HC compare "${common[@]}" --seeds 5 --untuned-starts --out experiments/headline/run \
    --controller "policy:$POLICY" --controller constant --controller cosine \
    --controller warmup-cosine --controller onecycle --controller plateau \
    --controller simple-reactive --controller hypergradient \
    --replay "policy:$POLICY" \
    --tune-on meta-train --tune-lrs 16 --tune-max-tasks 64 --tune-seeds 1 \
    --tune constant --tune step --tune exponential --tune cosine --tune warmup-cosine --tune onecycle

# The best single fixed schedule: its lr, momentum and family.
read -r BEST BEST_LR BEST_M BEST_FAMILY < <(python3 - experiments/headline/run/tune/chosen.json <<'PY'
import json, sys
best = [c for c in json.load(open(sys.argv[1])) if c["best_single"]][0]
name, params = best["chosen"].split(":", 1)
kv = dict(p.split("=") for p in params.split(","))
print(best["chosen"], kv.get("lr", kv.get("max_lr")), kv.get("momentum", "0.9"), name)
PY
)

# 2. Starting-lr sweep (seeds 0-1): every task × seed starts from the tuned best's lr × 0.01,
#    0.1, 1 and 10 (with its momentum); that schedule's family (same shape, lr from the start)
#    runs from there. run_policy.sh adds the policy.
for f in 0.01 0.1 1 10; do
    lr=$(python3 -c "print(f'{$BEST_LR * $f:.4g}')")
    $HC compare "${common[@]}" --seeds 2 --start-lr "$lr" --start-momentum "$BEST_M" \
        --out "experiments/headline/sweep-x$f" --controller "$BEST_FAMILY"
done

# 3. The oracle (seeds 0-1): per task and seed, the best of the best family's 32-configuration
#    grid on the evaluated task itself.
$HC compare "${common[@]}" --seeds 2 --untuned-starts --out experiments/headline/oracle \
    --controller "$BEST" --oracle --oracle-from "$BEST_FAMILY" --tune-lrs 16
