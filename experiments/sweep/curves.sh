#!/usr/bin/env bash
# Curves for the learning-curve predictor (issue 20): on every EVERY-th task of SPLIT of the
# headline collection, a random-search sweep of TRIALS full-budget trials over space.toml under
# CONTROLLER (default: the shipped policy with its guard). One folder per task under OUT.
#   SPLIT=meta-train EVERY=1 TRIALS=16 bash experiments/sweep/curves.sh experiments/sweep/curves/meta-train
# HC=path/to/hyperctl picks the binary (default: release). Each task's sweep resumes. Tasks whose
# training split is smaller than the space's largest batch are skipped and listed in OUT/skipped.txt.
set -euo pipefail
OUT=$1
HC=${HC:-./target/release/hyperctl}
SPLIT=${SPLIT:-meta-train}
EVERY=${EVERY:-1}
TRIALS=${TRIALS:-16}
SEED=${SEED:-0}
CONTROLLER=${CONTROLLER:-rollback(policy:policies/default)}
mkdir -p "$OUT"
tasks=$($HC tasks list experiments/headline/tasks.toml --data-dir ../shared/data --split "$SPLIT" \
    | awk -v s="$SPLIT" -v k="$EVERY" '$2 == s && $4 !~ /^cnn/ { n++; if ((n - 1) % k == 0) print $1 }')
n=$(echo "$tasks" | wc -l)
i=0
for t in $tasks; do
    i=$((i + 1))
    dir="$OUT/$(echo "$t" | tr '/' '_')"
    echo "[$i/$n] $t" >&2
    $HC sweep "experiments/headline/tasks.toml#$t" --data-dir ../shared/data --space experiments/sweep/space.toml \
        --method random --max-trials "$TRIALS" --budget 1000000 --search-seed "$SEED" \
        --controller "$CONTROLLER" --out "$dir" > /dev/null 2> "$dir.log" || {
        # A task too small for the space's batch sizes is skipped (and listed); anything else stops.
        if grep -q "training rows" "$dir.log"; then
            echo "$t: $(grep error: "$dir.log")" >> "$OUT/skipped.txt"
            continue
        fi
        cat "$dir.log" >&2
        exit 1
    }
done
