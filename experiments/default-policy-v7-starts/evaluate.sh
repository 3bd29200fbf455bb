#!/usr/bin/env bash
# Runs the shipping rule's meta-val cells (README.md) for one policy (progress on stderr):
#   bash experiments/default-policy-v7-starts/evaluate.sh POLICY_DIR NAME [OUT]
# writes OUT/fresh-seeds-NAME (seeds + 0..FRESH-1 at the tasks' own starts; FRESH=12) and
# OUT/sweep-NAME-x{F} (seeds + 0..SWEEP-1 from 0.08577 × F, momentum 0.9; SWEEP=2). OUT defaults
# to this folder. Each compare resumes from what its folder holds. HC=path/to/hyperctl picks the
# binary (default: release).
set -euo pipefail
POLICY=$1
NAME=$2
OUT=${3:-experiments/default-policy-v7-starts}
HC=${HC:-./target/release/hyperctl}
common=(--tasks envs/default.toml --data-dir ../shared/data --split meta-val)
$HC compare "${common[@]}" --seeds "${FRESH:-12}" --controller "policy:$POLICY" --out "$OUT/fresh-seeds-$NAME"
for f in 0.01 0.1 1 10; do
    lr=$(python3 -c "print(f'{0.08577 * $f:.4g}')")
    $HC compare "${common[@]}" --seeds "${SWEEP:-2}" --start-lr "$lr" --start-momentum 0.9 \
        --controller "policy:$POLICY" --out "$OUT/sweep-$NAME-x$f"
done
