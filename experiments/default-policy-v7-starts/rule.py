"""The shipping rule of a candidate against the shipped policy, on meta-val only (README.md):
  R1  fresh seeds: median over tasks of the mean episode return over seeds + SKIP.. (compare
      output `fresh-seeds-{base,cand}`), and divergences;
  R2  start sweep: per start (× 0.01, 0.1, 1, 10 the headline's tuned-best lr, momentum 0.9,
      seeds + SWEEP_SKIP.. (default 0); folders `sweep-{base,cand}-x{f}`), the mean over tasks of
      ln(test loss cand / base) (per task the mean over its seeds, a diverged run counting as the
      untrained model's validation loss, as in the headline) with a 95% bootstrap interval over
      tasks, and divergences.
    python3 experiments/default-policy-v7-starts/rule.py DIR BASE CAND SKIP [SWEEP_SKIP]
e.g. python3 experiments/default-policy-v7-starts/rule.py experiments/default-policy-v7-starts v6 v7 9
"""
import math, os, statistics, sys
from collections import defaultdict

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "../headline"))
from targets import bootstrap, loss_of, read_jsonl, source_of  # noqa: E402

folder, base, cand, skip = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sweep_skip = int(sys.argv[5]) if len(sys.argv) > 5 else 0


def fresh_cells(records, k):
    """The records of seeds + k.. of each task."""
    first = defaultdict(lambda: float("inf"))
    for r in records:
        first[r["task_id"]] = min(first[r["task_id"]], r["seed"])
    return [r for r in records if r["seed"] - first[r["task_id"]] >= k]


def fresh(name):
    records = read_jsonl(os.path.join(folder, f"fresh-seeds-{name}", "results.jsonl"))
    returns, diverged, runs = defaultdict(list), 0, 0
    for r in fresh_cells(records, skip):
        returns[r["task_id"]].append(r["episode_return"])
        runs += 1
        diverged += bool(r["diverged"])
    means = {t: sum(v) / len(v) for t, v in returns.items()}
    return means, diverged, runs


(mb, db, nb), (mc, dc, nc) = fresh(base), fresh(cand)
assert mb.keys() == mc.keys() and nb == nc, "the two fresh-seed runs hold different cells"
sb, sc = statistics.median(mb.values()), statistics.median(mc.values())
diff = bootstrap(mc[t] - mb[t] for t in mb)
r1 = sc >= sb and dc <= db
print(f"## R1 fresh seeds (+{skip}..): {base} {sb:.4f} ({db}/{nb} diverged), {cand} {sc:.4f} ({dc}/{nc} diverged)")
print(f"paired mean return {cand} - {base}: {diff['mean']:+.4f} [{diff['lo']:+.4f}, {diff['hi']:+.4f}]; "
      f"R1 {'passes' if r1 else 'FAILS'} (score not lower, no more divergences)\n")

print(f"## R2 start sweep (seeds + {sweep_skip}..)\n")
print(f"| start | cells | ln({cand} / {base}) | generated | tabular | diverged {base} / {cand} |")
print("|---|---:|---|---|---|---|")
r2, div_total = True, [0, 0]
for f in ["0.01", "0.1", "1", "10"]:
    runs = {}
    for v in [base, cand]:
        records = read_jsonl(os.path.join(folder, f"sweep-{v}-x{f}", "results.jsonl"))
        runs[v] = {(r["task_id"], r["seed"]): r for r in fresh_cells(records, sweep_skip)}
    assert runs[base].keys() == runs[cand].keys(), f"x{f}: the two runs hold different cells"
    by_task, by_source = defaultdict(list), defaultdict(lambda: defaultdict(list))
    for k in runs[base]:
        d = math.log(loss_of(runs[cand][k]) / loss_of(runs[base][k]))
        by_task[k[0]].append(d)
        by_source[source_of(k[0])][k[0]].append(d)
    t = bootstrap(sum(v) / len(v) for v in by_task.values())
    src = {}
    for s, tasks in by_source.items():
        b = bootstrap(sum(v) / len(v) for v in tasks.values())
        src[s] = f"{b['mean']:+.3f} [{b['lo']:+.3f}, {b['hi']:+.3f}]"
    div = [sum(bool(r["diverged"]) for r in runs[v].values()) for v in (base, cand)]
    div_total = [a + b for a, b in zip(div_total, div)]
    worse = t["lo"] > 0
    r2 = r2 and not worse
    print(f"| ×{f} | {len(runs[base])} | {t['mean']:+.3f} [{t['lo']:+.3f}, {t['hi']:+.3f}]{' **worse**' if worse else ''} | "
          f"{src.get('generated', '—')} | {src.get('tabular', '—')} | {div[0]} / {div[1]} |")
r2 = r2 and div_total[1] <= div_total[0]
print(f"\nsweep divergences {base} {div_total[0]}, {cand} {div_total[1]}; R2 {'passes' if r2 else 'FAILS'} "
      "(not worse at 95% from any start, no more divergences in all)")
print(f"\n**{cand} {'ships' if r1 and r2 else 'does not ship'}** (R1 and R2)")
