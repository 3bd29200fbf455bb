#!/usr/bin/env bash
# A policy on the headline's cells (same held-out tasks, seeds and untuned starts as
# experiments/headline/run), with its replay, its deployment guard (`rollback(policy)`) and its
# starting-lr sweep; the baselines, tuning, oracle and the schedule's sweep come from
# experiments/headline (run.sh first). About 15 min on 2 cores.
#   bash experiments/headline/run_policy.sh policies/default experiments/headline/v1
# HC=path/to/hyperctl runs another binary instead of building this checkout's (to keep a policy on
# the same code as the recorded baselines).
set -euo pipefail
POLICY=$1
DIR=$2
if [ -z "${HC:-}" ]; then
    HC=./target/release/hyperctl
    cargo build --release -p hyperctl
fi
common=(--tasks experiments/headline/tasks.toml --data-dir ../shared/data --split held-out)
$HC compare "${common[@]}" --seeds 5 --untuned-starts --out "$DIR/run" \
    --controller "policy:$POLICY" --replay "policy:$POLICY"
$HC compare "${common[@]}" --seeds 5 --untuned-starts --out "$DIR/rollback" \
    --controller "rollback(policy:$POLICY)"
for d in experiments/headline/sweep-x*; do
    read -r lr m < <(python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['comparison']['starts']; print(s['lr_min'], s['momenta'][0])" "$d/config.json")
    $HC compare "${common[@]}" --seeds 2 --start-lr "$lr" --start-momentum "$m" \
        --out "$DIR/$(basename "$d")" --controller "policy:$POLICY"
done
python3 experiments/headline/targets.py "$DIR" --baselines experiments/headline
