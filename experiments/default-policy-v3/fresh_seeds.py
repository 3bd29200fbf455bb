"""The fresh-seed check of README.md: median over meta-val tasks of the mean episode return over
run seeds task seed + 1..3, and divergences, for each folder given (compare output, 4 seeds).
    python3 experiments/default-policy-v3/fresh_seeds.py experiments/default-policy-v3/fresh-seeds-v1 ...
"""
import gzip, json, os, statistics, sys
from collections import defaultdict

for folder in sys.argv[1:]:
    path = os.path.join(folder, "results.jsonl")
    lines = open(path) if os.path.exists(path) else gzip.open(path + ".gz", "rt")
    records = [json.loads(line) for line in lines]
    first = defaultdict(lambda: float("inf"))
    for r in records:
        first[r["task_id"]] = min(first[r["task_id"]], r["seed"])
    returns, diverged, runs, selection = defaultdict(list), 0, 0, []
    for r in records:
        if r["seed"] == first[r["task_id"]]:
            selection.append(r["episode_return"])  # seed + 0: the one the checkpoint was chosen on
            continue
        returns[r["task_id"]].append(r["episode_return"])
        runs += 1
        diverged += bool(r["diverged"])
    score = statistics.median(statistics.mean(v) for v in returns.values())
    print(f"{folder}: score (median of task means, seeds +1..3) {score:.4f}; diverged {diverged}/{runs}; "
          f"{len(returns)} tasks; seed +0 median {statistics.median(selection):.4f}")
