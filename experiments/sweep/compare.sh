#!/usr/bin/env bash
# The search comparison of issue 20 on every EVERY-th MLP task of the headline's held-out split:
# per task and search seed, random search (REF_TRIALS full-budget trials: the reference), then
# the other METHODS with the same epoch budget (REF_TRIALS x the task's epochs), every trial
# run by CONTROLLER. One folder per task/seed/method under OUT; then anytime.py summarizes.
#   EVERY=4 SEEDS=5 bash experiments/sweep/compare.sh experiments/sweep/compare
# HC=path/to/hyperctl picks the binary (default: release); each sweep resumes.
set -euo pipefail
OUT=$1
HC=${HC:-./target/release/hyperctl}
EVERY=${EVERY:-4}
SEEDS=${SEEDS:-5}
REF_TRIALS=${REF_TRIALS:-64}
CONTROLLER=${CONTROLLER:-rollback(policy:policies/default)}
PREDICTOR=${PREDICTOR:-experiments/sweep/predictor.json}
PRIOR=${PRIOR:-experiments/sweep/curves/meta-train}
# random first (the reference); asha-late: one rung at ceil(epochs/3) (ASHA with a late first rung);
# prior-*: with the prior from the meta-train sweeps (4 nearest datasets); nc-*: no controller
# inside (warmup-cosine, the lr and momentum searched over space-lr.toml).
METHODS=${METHODS:-random asha predicted}
mkdir -p "$OUT"
tasks=$($HC tasks list experiments/headline/tasks.toml --data-dir ../shared/data --split held-out \
    | awk -v k="$EVERY" '$2 == "held-out" && $4 !~ /^cnn/ { n++; if ((n - 1) % k == 0) print $1 "," $6 }')
n=$(echo "$tasks" | wc -l)
i=0
for te in $tasks; do
    t=${te%,*}
    epochs=${te#*,}
    i=$((i + 1))
    budget=$((REF_TRIALS * epochs))
    for s in $(seq 0 $((SEEDS - 1))); do
        base="$OUT/$(echo "$t" | tr '/' '_')/seed$s"
        late=$(((epochs + 2) / 3))
        for m in $METHODS; do
            extra=()
            case $m in
                random) extra=(--method random --max-trials "$REF_TRIALS") ;;
                asha) extra=(--method asha --max-trials 100000) ;;
                predicted) extra=(--method predicted --predictor "$PREDICTOR" --max-trials 100000) ;;
                asha-late) extra=(--method "asha:eta=3,min_epochs=$late" --max-trials 100000) ;;
                prior-asha-late) extra=(--method "asha:eta=3,min_epochs=$late" --max-trials 100000 --prior "$PRIOR" --prior-k 4) ;;
                prior-random) extra=(--method random --max-trials "$REF_TRIALS" --prior "$PRIOR" --prior-k 4) ;;
                nc-random) extra=(--method random --max-trials "$REF_TRIALS") ;;
                nc-asha-late) extra=(--method "asha:eta=3,min_epochs=$late" --max-trials 100000) ;;
                *) echo "unknown method $m" >&2; exit 2 ;;
            esac
            mkdir -p "$base"
            echo "[$i/$n] $t seed $s $m (budget $budget epochs)" >&2
            # nc-*: no controller inside: warmup-cosine at a searched lr and momentum.
            space=experiments/sweep/space.toml
            controller=$CONTROLLER
            if [[ $m == nc-* ]]; then
                space=experiments/sweep/space-lr.toml
                controller=warmup-cosine
            fi
            if ! $HC sweep "experiments/headline/tasks.toml#$t" --data-dir ../shared/data \
                --space "$space" --budget "$budget" --search-seed "$s" \
                --controller "$controller" "${extra[@]}" --out "$base/$m" > /dev/null 2> "$base/$m.log"; then
                if grep -q "training rows" "$base/$m.log"; then
                    echo "$t: $(grep error: "$base/$m.log")" >> "$OUT/skipped.txt"
                    rm -rf "$base"
                    continue 2
                fi
                cat "$base/$m.log" >&2
                exit 1
            fi
        done
    done
done
