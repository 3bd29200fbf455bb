"""v6 − v5 on meta-val from fixed starts (the headline's tuned-best lr × 1 and × 10, momentum 0.9,
seeds + 0..1): per cell ln(loss_v6 / loss_v5) as in experiments/headline/paired.py, mean over
tasks with a 95% bootstrap interval, and divergences. A diagnostic of whether a meta-val start
sweep sees what the held-out sweep saw; not a shipping rule (no rule was written for it).
    python3 experiments/default-policy-v6-segments/meta-val-start-sweep/paired.py
"""
import math, os, sys
from collections import defaultdict

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "../../headline"))
from targets import bootstrap, loss_of, read_jsonl, source_of  # noqa: E402

print("| start | cells | ln(v6 / v5) | by source | diverged v5 / v6 |")
print("|---|---:|---|---|---|")
for start in ["x1", "x10"]:
    runs = {}
    for v in ["v5", "v6"]:
        runs[v] = {(r["task_id"], r["seed"]): r for r in read_jsonl(os.path.join(here, f"{v}-{start}", "results.jsonl"))}
    assert runs["v5"].keys() == runs["v6"].keys(), "the two runs hold different cells"
    by_task, by_source = defaultdict(list), defaultdict(lambda: defaultdict(list))
    for k in runs["v5"]:
        d = math.log(loss_of(runs["v6"][k]) / loss_of(runs["v5"][k]))
        by_task[k[0]].append(d)
        by_source[source_of(k[0])][k[0]].append(d)
    t = bootstrap(sum(v) / len(v) for v in by_task.values())
    parts = []
    for s, tasks in sorted(by_source.items()):
        b = bootstrap(sum(v) / len(v) for v in tasks.values())
        parts.append(f"{s} ({len(tasks)}) {b['mean']:+.3f} [{b['lo']:+.3f}, {b['hi']:+.3f}]")
    div = {v: sum(r["diverged"] for r in runs[v].values()) for v in runs}
    print(f"| ×{start[1:]} | {len(by_task) and sum(len(v) for v in by_task.values())} | {t['mean']:+.3f} [{t['lo']:+.3f}, {t['hi']:+.3f}] | {'; '.join(parts)} | {div['v5']} / {div['v6']} |")
