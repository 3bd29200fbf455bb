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
