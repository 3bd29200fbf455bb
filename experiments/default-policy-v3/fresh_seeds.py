"""The fresh-seed check of README.md: median over meta-val tasks of the mean episode return over
the run seeds after the first K (task seed + K..; K = 1 unless `--skip K`: the seeds the checkpoint
was chosen on), and divergences, for each folder given (compare output).
    python3 experiments/default-policy-v3/fresh_seeds.py experiments/default-policy-v3/fresh-seeds-v1 ...
    python3 experiments/default-policy-v3/fresh_seeds.py --skip 3 experiments/default-policy-v5/fresh-seeds-v1 ...
"""
import gzip, json, os, statistics, sys
from collections import defaultdict

args = sys.argv[1:]
skip = 1
if args[:1] == ["--skip"]:
    skip, args = int(args[1]), args[2:]
    assert skip >= 1, "--skip must be at least 1"

for folder in args:
    path = os.path.join(folder, "results.jsonl")
    lines = open(path) if os.path.exists(path) else gzip.open(path + ".gz", "rt")
    records = [json.loads(line) for line in lines]
    first = defaultdict(lambda: float("inf"))
    for r in records:
        first[r["task_id"]] = min(first[r["task_id"]], r["seed"])
    returns, diverged, runs, selection = defaultdict(list), 0, 0, defaultdict(list)
    for r in records:
        if r["seed"] - first[r["task_id"]] < skip:
            selection[r["task_id"]].append(r["episode_return"])  # seeds + 0..K-1: those the checkpoint was chosen on
            continue
        returns[r["task_id"]].append(r["episode_return"])
        runs += 1
        diverged += bool(r["diverged"])
    score = statistics.median(statistics.mean(v) for v in returns.values())
    print(f"{folder}: score (median of task means, seeds +{skip}..) {score:.4f}; diverged {diverged}/{runs}; "
          f"{len(returns)} tasks; selection seeds' score {statistics.median(statistics.mean(v) for v in selection.values()):.4f}")
