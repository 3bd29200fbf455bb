#!/usr/bin/env bash
# Another policy on the headline's cells (same held-out tasks, seeds and untuned starts as
# experiments/headline/run), with its replay and its starting-lr sweep; the baselines, tuning,
# oracle and the schedule's sweep are taken from experiments/headline (run.sh first).
#   bash experiments/headline/run_policy.sh experiments/default-policy-v1/run experiments/headline/v1
set -euo pipefail
POLICY=$1
DIR=$2
HC=./target/release/hyperctl
cargo build --release -p hyperctl
common=(--tasks experiments/headline/tasks.toml --data-dir ../shared/data --split held-out --seeds 5)
$HC compare "${common[@]}" --untuned-starts --out "$DIR/run" \
    --controller "policy:$POLICY" --replay "policy:$POLICY"
for d in experiments/headline/sweep-x*; do
    start=$(python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['comparison']['starts']; print(s['lr_min'], s['momenta'][0])" "$d/config.json")
    read -r lr m <<<"$start"
    $HC compare "${common[@]}" --start-lr "$lr" --start-momentum "$m" \
        --out "$DIR/$(basename "$d")" --controller "policy:$POLICY"
done
python3 experiments/headline/targets.py "$DIR" --baselines experiments/headline
