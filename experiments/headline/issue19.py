"""Issue 19's targets for a policy's headline folder (run_policy.sh output, targets.py run first):
  (a) mean ln(policy / tuned best) <= -0.03 and < 0 at 95%;
  (b) better than each parameter-free method of experiments/headline/param-free at 95% (paired on
      the same cells: policy - method, bootstrap over tasks; the param-free runs were made with
      the code of f2b0727 on the same cells, seeds and starts);
  (c) no divergence without the guard;
  (d) start-sweep spread (mean over tasks of ln(max/min) over starts x0.01..x10) <= 0.05;
  (e) better than the task-agnostic open-loop ablation at 95%: FOLDER/agnostic/run holds
      `open-loop:FILE` on the same cells, FILE fitted by agnostic_replay.py from the policy's runs
      on meta-train (FOLDER/agnostic/meta-train); the per-task replay stays in the table. Without
      FOLDER/agnostic the task-agnostic row says "not measured".
(f) and (g) need the PyTorch transfer benchmark and an AdamW policy; not computed here.
    python3 experiments/headline/issue19.py experiments/headline/v8 [more folders...]
"""
import json, math, os, sys
from collections import defaultdict

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from targets import bootstrap, exists, loss_of, read_jsonl  # noqa: E402

PARAM_FREE = ["prodigy", "dog", "average(dog)", "ldog", "d-adapt", "lr-range-test", "schedule-free"]


def fmt(b):
    return f"{b['mean']:+.3f} [{b['lo']:+.3f}, {b['hi']:+.3f}]"


def policy_cells(folder, prefix="policy:"):
    out = {}
    for r in read_jsonl(os.path.join(folder, "run", "results.jsonl")):
        if r["controller"].startswith(prefix):
            out[(r["task_id"], r["seed"])] = r
    return out


def paired_ln(a, b):
    """Mean over tasks (seeds averaged within a task) of ln(loss_a / loss_b), bootstrapped."""
    assert a.keys() == b.keys(), "the two runs hold other cells"
    by_task = defaultdict(list)
    for k in a:
        by_task[k[0]].append(math.log(loss_of(a[k]) / loss_of(b[k])))
    return bootstrap(sum(v) / len(v) for v in by_task.values())


def tuned_best_cells():
    chosen = json.load(open(os.path.join(here, "run", "tune", "chosen.json")))
    name = [c for c in chosen if c["best_single"]][0]["chosen"]
    return {(r["task_id"], r["seed"]): r for r in read_jsonl(os.path.join(here, "run", "results.jsonl"))
            if r["controller"] == name}


pf = defaultdict(dict)
for r in read_jsonl(os.path.join(here, "param-free", "run", "results.jsonl")):
    pf[r["controller"]][(r["task_id"], r["seed"])] = r

for folder in sys.argv[1:]:
    t = json.load(open(os.path.join(folder, "targets.json")))
    tg = t["targets"]
    pol = policy_cells(folder)
    a = tg["ln_vs_tuned_best"]["value"]
    print(f"## {t['policy']} ({folder})\n")
    print("| target | measured | met? |")
    print("|---|---|---|")
    print(f"| (a) ln(policy / tuned best) <= -0.03, < 0 at 95% | {fmt(a)} | {'yes' if a['mean'] <= -0.03 and a['hi'] < 0 else 'no'} |")
    rows = []
    all_better = True
    for m in PARAM_FREE:
        cells = pf[m]
        assert cells.keys() == pol.keys(), f"{m}: other cells than the policy's"
        by_task = defaultdict(list)
        for k in pol:
            by_task[k[0]].append(math.log(loss_of(pol[k]) / loss_of(cells[k])))
        b = bootstrap(sum(v) / len(v) for v in by_task.values())
        better = b["hi"] < 0
        all_better &= better
        rows.append(f"{m} {fmt(b)}{'' if better else ' (not better)'}")
    print(f"| (b) better than each parameter-free method at 95% (policy − it) | {'; '.join(rows)} | {'yes' if all_better else 'no'} |")
    d = tg["divergences"]
    print(f"| (c) no divergence without the guard | {d['value']}/{d['runs']} (guarded {tg['with_rollback_guard']['diverged']}/{tg['with_rollback_guard']['runs']}) | {'yes' if d['value'] == 0 else 'no'} |")
    sw = tg["sweep"]["value"]["controllers"][t["policy"]]
    print(f"| (d) start-sweep spread <= 0.05 | mean {sw['spread']['mean']:.3f} [{sw['spread']['lo']:.3f}, {sw['spread']['hi']:.3f}], median task {sw['median_task_spread']:.3f} | {'yes' if sw['spread']['mean'] <= 0.05 else 'no'} |")
    rp = tg["vs_replay"]["ln"]
    agn_dir = os.path.join(folder, "agnostic")
    if exists(os.path.join(agn_dir, "run", "results.jsonl")):
        agn = policy_cells(agn_dir, "open-loop:")
        e = paired_ln(pol, agn)
        vs_best = paired_ln(agn, tuned_best_cells())
        n_div = sum(r["diverged"] for r in agn.values())
        print(f"| (e) better than the task-agnostic open-loop ablation at 95% | ln(policy / agnostic) {fmt(e)} (the agnostic schedule: {fmt(vs_best)} vs the tuned best, {n_div}/{len(agn)} diverged) | {'yes' if e['hi'] < 0 else 'no'} |")
    else:
        print("| (e) better than the task-agnostic open-loop ablation at 95% | not measured | — |")
    print(f"| (e') better than its per-task open-loop replay at 95% | ln(policy / replay) {fmt(rp)} | {'yes' if rp['hi'] < 0 else 'no'} |")
    print("| (f) PyTorch transfer | not measured here | — |")
    print("| (g) AdamW policy | none trained | no |\n")
