"""Paired comparison of two policies' headline runs on the same cells (same tasks, seeds, starts):
per cell ln(loss_B / loss_A) (a diverged run counts as the untrained model's validation loss, as in
targets.py), averaged over seeds within a task, then over tasks, with a 95% percentile-bootstrap
interval over tasks; for the default runs (`run/`), the guarded ones (`rollback/`) and the
starting-lr sweep (`sweep-x*/`, per factor). An interval that contains 0 is a tie.
    python3 experiments/headline/paired.py experiments/headline/v5-here experiments/headline/v6
"""
import glob, math, os, sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(__file__))
from targets import bootstrap, loss_of, read_jsonl, source_of  # noqa: E402


def cells(folder):
    out = {}
    for r in read_jsonl(os.path.join(folder, "results.jsonl")):
        if r["controller"].startswith(("policy:", "rollback(")):
            out[(r["task_id"], r["seed"])] = (loss_of(r), r["diverged"])
    return out


def compare(name, a_dir, b_dir):
    a, b = cells(a_dir), cells(b_dir)
    keys = sorted(set(a) & set(b))
    if len(keys) != len(a) or len(keys) != len(b):
        sys.exit(f"error: {a_dir} and {b_dir} do not hold the same cells ({len(a)} vs {len(b)})")
    by_task, by_source = defaultdict(list), defaultdict(lambda: defaultdict(list))
    for k in keys:
        d = math.log(b[k][0] / a[k][0])
        by_task[k[0]].append(d)
        by_source[source_of(k[0])][k[0]].append(d)
    t = bootstrap(sum(v) / len(v) for v in by_task.values())
    mean, lo, hi = t["mean"], t["lo"], t["hi"]
    parts = []
    for s, tasks in sorted(by_source.items()):
        t = bootstrap(sum(v) / len(v) for v in tasks.values())
        parts.append(f"{s} {t['mean']:+.3f} [{t['lo']:+.3f}, {t['hi']:+.3f}]")
    div_a = sum(v[1] for v in a.values())
    div_b = sum(v[1] for v in b.values())
    print(f"| {name} | {len(keys)} | {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] | {'; '.join(parts)} | {div_a} / {div_b} |")


a_dir, b_dir = sys.argv[1], sys.argv[2]
print(f"B = {b_dir}, A = {a_dir}: mean over tasks of ln(loss_B / loss_A)\n")
print("| runs | cells | ln(B / A) | by source | diverged A / B |")
print("|---|---:|---|---|---|")
for sub in ["run", "rollback"] + sorted(os.path.basename(p) for p in glob.glob(os.path.join(b_dir, "sweep-x*"))):
    compare(sub, os.path.join(a_dir, sub), os.path.join(b_dir, sub))
