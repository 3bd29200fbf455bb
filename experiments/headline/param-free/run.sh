#!/usr/bin/env bash
# The headline cells (163 held-out tasks x 5 seeds, untuned starts, as experiments/headline/run)
# with the real competitors for "no tuning" (issue 17): DoG and DoG with its authors' averager,
# L-DoG, Schedule-Free SGD, Prodigy, D-Adaptation SGD and the LR range test + one-cycle, beside
# the shipped policy (bare and averaged) and the best single tuned schedule (warmup-cosine, tuned on
# meta-train in experiments/headline/run: lr 0.0858, momentum 0.9). About 35 min on 2 cores.
#   bash experiments/headline/param-free/run.sh
# HC=path/to/hyperctl runs another binary instead of building this checkout's.
set -euo pipefail
if [ -z "${HC:-}" ]; then
    HC=./target/release/hyperctl
    cargo build --release -p hyperctl
fi
TUNED="warmup-cosine:lr=8.577e-2,momentum=0.9"
$HC compare --tasks experiments/headline/tasks.toml --data-dir ../shared/data --split held-out \
    --seeds 5 --untuned-starts --out experiments/headline/param-free/run --reference "$TUNED" \
    --controller "$TUNED" \
    --controller policy:policies/default --controller "average(policy:policies/default)" \
    --controller dog --controller "average(dog)" --controller ldog \
    --controller schedule-free --controller prodigy --controller d-adapt \
    --controller lr-range-test "$@"
