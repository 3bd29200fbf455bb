#!/usr/bin/env bash
# Every baseline on AdamW tasks (issue 17): the generated collection's `adamw-test` split (20
# spirals tasks, a family never in any training split) x 5 seeds, untuned starts (AdamW scale: lr
# log-uniform in [1e-5, 0.1], beta1 0 or 0.9), warmup-cosine tuned on `adamw-meta-val` (12 lrs x
# beta1 {0, 0.9}) as the reference. About 3 min on 2 cores.
#   bash experiments/adamw-baselines/run.sh
set -euo pipefail
if [ -z "${HC:-}" ]; then
    HC=./target/release/hyperctl
    cargo build --release -p hyperctl
fi
$HC compare --tasks generated --split adamw-test --seeds 5 --untuned-starts \
    --tune-on adamw-meta-val --tune warmup-cosine --tune-lrs 12 \
    --out experiments/adamw-baselines/run \
    --controller cosine --controller dog --controller "average(dog)" --controller ldog \
    --controller schedule-free --controller prodigy --controller d-adapt \
    --controller lr-range-test "$@"
