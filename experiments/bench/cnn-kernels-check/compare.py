"""Before/after check of the CNN kernels (README.md): the same compare run with the binary before
(burn's conv2d/max_pool2d, glibc malloc) and after (crate kernels + mimalloc); per run
|ln(test loss after / before)| and the summed wall time.
    python3 experiments/bench/cnn-kernels-check/compare.py
"""
import json, math, os, statistics

here = os.path.dirname(os.path.abspath(__file__))


def load(name):
    with open(os.path.join(here, name, "results.jsonl")) as f:
        return {(r["task_id"], r["seed"], r["controller"]): r for r in map(json.loads, f)}


before, after = load("before"), load("after")
assert before.keys() == after.keys()
rows = []
for key in sorted(before):
    b, a = before[key], after[key]
    rows.append((abs(math.log(a["test_loss"] / b["test_loss"])), key, b["diverged"], a["diverged"]))
for controller in sorted({k[2] for k in before}):
    d = [r[0] for r in rows if r[1][2] == controller]
    print(f"{controller}: {len(d)} runs, |ln after/before| median {statistics.median(d):.2e}, "
          f"max {max(d):.3f}, runs above 1e-4: {sum(x > 1e-4 for x in d)}")
print("diverged before/after:", sum(r[2] for r in rows), sum(r[3] for r in rows))
wall = lambda runs: sum(r["wall_secs"] for r in runs.values())
print(f"wall (summed over runs): before {wall(before):.0f} s, after {wall(after):.0f} s, "
      f"x{wall(before) / wall(after):.2f}")
