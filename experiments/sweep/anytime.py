"""Summarizes experiments/sweep/compare.sh: per task and search seed, the anytime curves of each
method (after each trial, against the epochs spent, the incumbent's final validation loss — what
the search minimizes, never increasing — and its test loss; the incumbent is the completed trial
with the lowest final validation loss), against random search's best of its REF trials.
  - epochs to reach random's best-of-REF *validation* loss, as a fraction of random's epochs (a
    method that never reaches it counts as > 1);
  - at equal epochs (1/16, 1/8, 1/4, 1/2 and all of random's), mean over tasks of
    ln(incumbent's test loss of the method / of random at the same epochs), and the same for the
    validation loss, 95% bootstrap over tasks (losses floored at FLOOR = 1e-3 in the ratios).
    python3 experiments/sweep/anytime.py experiments/sweep/compare [METHOD ...]
"""
import glob, gzip, json, math, os, random, sys
from collections import defaultdict

# Losses below this are floored in ratios: a separable task's validation loss near 0 (1e-7 vs 0)
# would otherwise dominate every mean.
FLOOR = 1e-3


def bootstrap(values, resamples=2000, seed=0xB00757A9):
    values = list(values)
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(values) for _ in values) / len(values) for _ in range(resamples))
    return sum(values) / len(values), means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def trials(folder):
    path = os.path.join(folder, "results.jsonl")
    f = open(path) if os.path.exists(path) else gzip.open(path + ".gz", "rt")
    with f:
        return [json.loads(line) for line in f if line.strip()]


def curve(folder, key):
    """The anytime curve as `hyperctl sweep`'s summary computes it: after each trial, the epochs
    spent and the incumbent's `key` ("best_val_loss" or "best_test_loss")."""
    best, out = None, []
    for t in trials(folder):
        done = not t["stopped"] and not t["diverged"] and t["final_val_loss"] is not None
        if done and (best is None or t["final_val_loss"] < best["final_val_loss"]):
            best = t
        value = None if best is None else best["final_val_loss" if key == "best_val_loss" else "test_loss"]
        out.append((t["epochs_spent"], value))
    return out


def at(points, epochs):
    """The incumbent's test loss once `epochs` were spent (None before any trial completed)."""
    best = None
    for e, v in points:
        if e > epochs:
            break
        if v is not None:
            best = v
    return best


def main():
    root = sys.argv[1]
    methods = sys.argv[2:] or ["asha", "predicted"]
    reach = defaultdict(lambda: defaultdict(list))
    gaps = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    cells = 0
    for seed_dir in sorted(glob.glob(os.path.join(root, "*", "seed*"))):
        task = os.path.basename(os.path.dirname(seed_dir))
        if not all(os.path.exists(os.path.join(seed_dir, m, "summary.md")) for m in ["random"] + methods):
            continue
        cells += 1
        ref_val = curve(os.path.join(seed_dir, "random"), "best_val_loss")
        ref_test = curve(os.path.join(seed_dir, "random"), "best_test_loss")
        total = ref_val[-1][0]
        target = at(ref_val, total)
        for m in methods:
            c_val = curve(os.path.join(seed_dir, m), "best_val_loss")
            c_test = curve(os.path.join(seed_dir, m), "best_test_loss")
            hit = next((e for e, v in c_val if v is not None and target is not None and v <= target), None)
            reach[m][task].append(hit / total if hit is not None else float("inf"))
            for frac in [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1]:
                for what, c, ref in [("test", c_test, ref_test), ("val", c_val, ref_val)]:
                    a, b = at(c, frac * total), at(ref, frac * total)
                    if a is not None and b is not None:
                        gaps[(m, what)][frac][task].append(math.log(max(a, FLOOR) / max(b, FLOOR)))
    tasks = len({os.path.basename(os.path.dirname(d)) for d in glob.glob(os.path.join(root, "*", "seed*"))})
    print(f"{cells} task x seed cells over {tasks} tasks (reference: random search's best of its trials)\n")
    print("| method | median fraction of random's epochs to reach its best validation loss | reached within 1/10 | reached at all |")
    print("|---|---:|---:|---:|")
    for m in methods:
        fr = sorted(f for v in reach[m].values() for f in v)
        med = fr[len(fr) // 2] if fr else float("nan")
        print(f"| {m} | {med:.3f} | {sum(f <= 0.1 for f in fr)}/{len(fr)} | {sum(f <= 1 for f in fr)}/{len(fr)} |")
    for what in ["test", "val"]:
        print(f"\nAt equal epochs, ln(incumbent's {what} loss of the method / of random search), mean over tasks [95% bootstrap] (tasks):\n")
        print("| method | " + " | ".join(f"{f:g} of the budget" for f in [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1]) + " |")
        print("|---|" + "---|" * 5)
        for m in methods:
            row = []
            for frac in [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1]:
                per_task = [sum(v) / len(v) for v in gaps[(m, what)][frac].values()]
                if per_task:
                    mean, lo, hi = bootstrap(per_task)
                    row.append(f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}] ({len(per_task)})")
                else:
                    row.append("—")
            print(f"| {m} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
