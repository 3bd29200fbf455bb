#!/usr/bin/env python3
"""Issue 7's targets, measured from the headline comparison's recorded runs (stdlib only).

Usage (from the repository root, after experiments/headline/run.sh):

    python3 experiments/headline/targets.py experiments/headline
    python3 experiments/headline/targets.py experiments/headline/v1 --baselines experiments/headline

Reads `run/` (the comparison: results.jsonl, replay-*/results.jsonl, oracle/results.jsonl,
tune/chosen.json) and `sweep-x*/` (the starting-lr sweep) under the given folder, and writes
`targets.md`, `targets.json` and `headline.svg` there. With `--baselines B`, the folder's runs
hold only another policy (first controller) and its replay, on the same tasks, seeds and starts
(checked); every other controller, the tuning, the oracle and the sweep's schedule come from B.

Definitions (the same as `hyperctl compare`'s summary):
- a run's loss is its final test loss; a diverged run counts as the untrained model's
  validation loss;
- per (task, seed) cell a statistic is computed, averaged over seeds within a task, then over
  tasks; 95% intervals are percentile bootstraps over tasks (2000 resamples, fixed seed), so
  tasks, not seeds, are the unit of evidence;
- win rate of A vs B: 1 when A's loss is lower, 1/2 when equal, 0 otherwise;
- a difference whose interval contains 0 is reported as a tie.
"""

import glob
import gzip
import json
import math
import os
import random
import sys
from collections import defaultdict

LN_TARGET = 0.02  # mean ln(policy / tuned best) allowed
WIN_TARGET = 0.90
SWEEP_TARGET = math.log(1.05)  # ln(max/min) of the final loss across the starting-lr sweep


def exists(path):
    """A results file, or its committed gzip copy."""
    return os.path.exists(path) or os.path.exists(path + ".gz")


def read_jsonl(path):
    if not os.path.exists(path):
        with gzip.open(path + ".gz", "rt") as f:
            return [json.loads(line) for line in f if line.strip()]
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def loss_of(r):
    if not r["diverged"] and r.get("test_loss") is not None:
        return max(r["test_loss"], 1e-12)
    return max(r["initial_val_loss"], 1e-12)


def source_of(task_id):
    return task_id.split("/")[0]  # generated / tabular / mnist


def bootstrap(per_task, resamples=2000, seed=0xB00757A9):
    """Mean over tasks of per-task values, with a 95% percentile-bootstrap interval."""
    vals = list(per_task)
    n = len(vals)
    if n == 0:
        return None
    rng = random.Random(seed)
    means = sorted(sum(vals[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    pick = lambda q: means[round((len(means) - 1) * q)]
    return {"mean": sum(vals) / n, "lo": pick(0.025), "hi": pick(0.975), "tasks": n}


def per_task_mean(cell_values):
    """{(task, seed): v} -> {task: mean over seeds}."""
    acc = defaultdict(list)
    for (task, _), v in cell_values.items():
        acc[task].append(v)
    return {t: sum(v) / len(v) for t, v in acc.items()}


def paired(cells, a, b, fn, tasks=None):
    """Bootstrap of fn(loss_a, loss_b) over the cells both have (optionally only `tasks`)."""
    values = {}
    for key, row in cells.items():
        if a in row and b in row and (tasks is None or key[0] in tasks):
            values[key] = fn(row[a], row[b])
    return bootstrap(per_task_mean(values).values())


def ln_ratio(x, y):
    return math.log(x / y)


def win(x, y):
    return 1.0 if x < y else 0.5 if x == y else 0.0


def fmt(ci, digits=3, pct=False, sign=True):
    if ci is None:
        return "—"
    if pct:
        f = lambda v: f"{100 * v:.{max(digits - 2, 0)}f}%"
    elif sign:
        f = lambda v: f"{v:+.{digits}f}"
    else:
        f = lambda v: f"{v:.{digits}f}"
    return f"{f(ci['mean'])} [{f(ci['lo'])}, {f(ci['hi'])}]"


def rate(ci):
    return fmt(ci, 2, sign=False)


def verdict_vs(ci):
    if ci is None:
        return "—"
    if ci["hi"] < 0:
        return "better (95% interval below 0)"
    if ci["lo"] > 0:
        return "worse (95% interval above 0)"
    return "tie (95% interval contains 0)"


def svg_intervals(rows, title, xlabel, path, target=None):
    """Horizontal interval plot: one row per (label, ci)."""
    width, left, right, top, row_h = 860, 270, 40, 50, 26
    height = top + row_h * len(rows) + 50
    lo = min(min(ci["lo"] for _, ci in rows), 0.0, target if target is not None else 0.0)
    hi = max(max(ci["hi"] for _, ci in rows), 0.0, target if target is not None else 0.0)
    pad = 0.05 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad
    x = lambda v: left + (v - lo) / (hi - lo) * (width - left - right)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
    ]
    bottom = top + row_h * len(rows)
    step = next(t for t in [0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0] if (hi - lo) / t <= 8)
    for k in range(math.ceil(lo / step), math.floor(hi / step) + 1):
        v = k * step
        out.append(f'<line x1="{x(v):.1f}" y1="{top - 8}" x2="{x(v):.1f}" y2="{bottom}" stroke="#ddd"/>')
        out.append(f'<text x="{x(v):.1f}" y="{bottom + 16}" text-anchor="middle">{v:.2f}</text>')
    out.append(f'<line x1="{x(0):.1f}" y1="{top - 8}" x2="{x(0):.1f}" y2="{bottom}" stroke="black"/>')
    if target is not None:
        out.append(
            f'<line x1="{x(target):.1f}" y1="{top - 8}" x2="{x(target):.1f}" y2="{bottom}" '
            f'stroke="#c00" stroke-dasharray="4,3"/>'
        )
    for i, (label, ci) in enumerate(rows):
        y = top + row_h * i + row_h / 2
        out.append(f'<text x="{left - 10}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
        out.append(
            f'<line x1="{x(ci["lo"]):.1f}" y1="{y:.1f}" x2="{x(ci["hi"]):.1f}" y2="{y:.1f}" '
            f'stroke="#1f77b4" stroke-width="3"/>'
        )
        out.append(f'<circle cx="{x(ci["mean"]):.1f}" cy="{y:.1f}" r="5" fill="#1f77b4"/>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{bottom + 38}" text-anchor="middle">{xlabel}</text>')
    out.append("</svg>")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out))
    os.replace(tmp, path)


def main(folder, baselines=None):
    base = baselines or folder
    run = os.path.join(base, "run")
    config = json.load(open(os.path.join(run, "config.json")))
    comparison = config["comparison"]
    chosen = json.load(open(os.path.join(run, "tune", "chosen.json")))
    best = [c for c in chosen if c["best_single"]][0]
    tuned_best = best["chosen"]
    base_policy = comparison["controllers"][0]
    families = [c for c in comparison["controllers"][1:]]

    records = read_jsonl(os.path.join(run, "results.jsonl"))
    for d in sorted(glob.glob(os.path.join(run, "replay-*"))):
        records += read_jsonl(os.path.join(d, "results.jsonl"))
    policy = base_policy
    if baselines:
        own = os.path.join(folder, "run")
        own_config = json.load(open(os.path.join(own, "config.json")))
        policy = own_config["comparison"]["controllers"][0]
        for key in ["collection", "split", "seeds", "task_ids", "starts", "backend"]:
            if own_config["comparison"][key] != comparison[key]:
                sys.exit(f"{own}: `{key}` differs from {run}'s; the policies would not share cells")
        records = [r for r in records if base_policy not in r["controller"]]
        records += read_jsonl(os.path.join(own, "results.jsonl"))
        for d in sorted(glob.glob(os.path.join(own, "replay-*"))):
            records += read_jsonl(os.path.join(d, "results.jsonl"))
        config = own_config
    # Every controller of a cell started from the same point.
    starts = {}
    for r in records:
        key = (r["task_id"], r["seed"])
        if r["controller"] in families or r["controller"] == policy:
            start = (r.get("init_lr"), r.get("init_momentum"))
            if starts.setdefault(key, start) != start:
                sys.exit(f"cell {key}: controllers started from different points")
    cells = defaultdict(dict)  # (task, seed) -> controller -> loss
    diverged = defaultdict(int)
    runs = defaultdict(int)
    diverged_runs = defaultdict(list)
    for r in records:
        cells[(r["task_id"], r["seed"])][r["controller"]] = loss_of(r)
        runs[r["controller"]] += 1
        if r["diverged"]:
            diverged[r["controller"]] += 1
            diverged_runs[r["controller"]].append(
                f'{r["task_id"]} seed {r["seed"]} (start lr {r.get("init_lr", float("nan")):.3g}, '
                f'momentum {r.get("init_momentum")})'
            )
    if baselines:
        guard = os.path.join(folder, "rollback", "results.jsonl")
        if exists(guard):
            for r in read_jsonl(guard):
                cells[(r["task_id"], r["seed"])][r["controller"]] = loss_of(r)
                runs[r["controller"]] += 1
                if r["diverged"]:
                    diverged[r["controller"]] += 1
                    diverged_runs[r["controller"]].append(f'{r["task_id"]} seed {r["seed"]}')
    oracle_path = os.path.join(base, "oracle", "oracle", "results.jsonl")
    grid_size = 0
    if exists(oracle_path):
        grid = read_jsonl(oracle_path)
        grid_size = len({r["controller"] for r in grid})
        best_run = {}
        for r in grid:
            key = (r["task_id"], r["seed"])
            if key not in best_run or loss_of(r) < loss_of(best_run[key]):
                best_run[key] = r
        for key, r in best_run.items():
            cells[key]["oracle"] = loss_of(r)
            runs["oracle"] += 1
            diverged["oracle"] += r["diverged"]
    replay = f"replay({policy})"
    tuned = [c["chosen"] for c in chosen]
    tasks = sorted({t for t, _ in cells})
    sources = sorted({source_of(t) for t in tasks})
    seeds = comparison["seeds"]

    # Main table: every controller against the tuned best single fixed schedule.
    guarded = f"rollback({policy})"
    controllers = [policy] + ([guarded] if runs.get(guarded) else []) + families \
        + [c for c in tuned if c not in families] + [replay]
    if grid_size:
        controllers.append("oracle")
    table = []
    for c in controllers:
        table.append({
            "controller": c,
            "ln_vs_tuned_best": paired(cells, c, tuned_best, ln_ratio),
            "policy_win_rate": None if c == policy else paired(cells, policy, c, win),
            "diverged": diverged.get(c, 0),
            "runs": runs.get(c, len([k for k in cells if c in cells[k]])),
        })

    t1 = paired(cells, policy, tuned_best, ln_ratio)
    source_tasks = {s: {t for t in tasks if source_of(t) == s} for s in sources}
    t1_by_source = {s: paired(cells, policy, tuned_best, ln_ratio, source_tasks[s])
                    for s in sources}
    wins = {f: paired(cells, policy, f, win) for f in families}
    # The policy as deployed with `--rollback` (when its runs exist): same cells, same families.
    has_guard = bool(runs.get(guarded))
    guard_t1 = paired(cells, guarded, tuned_best, ln_ratio) if has_guard else None
    guard_wins = {f: paired(cells, guarded, f, win) for f in families} if has_guard else None
    guard_by_source = {s: paired(cells, guarded, tuned_best, ln_ratio, source_tasks[s])
                       for s in sources} if has_guard else None
    wins_by_source = {f: {s: paired(cells, policy, f, win, source_tasks[s])
                          for s in sources} for f in families}
    # Win rates by how far the shared start was from the tuned best's lr: near starts leave a
    # family little to lose, far ones are where reacting pays.
    best_lr = float(dict(p.split("=") for p in tuned_best.split(":", 1)[1].split(","))
                    .get("lr", dict(p.split("=") for p in tuned_best.split(":", 1)[1].split(",")).get("max_lr")))
    near_cells = {k for k, v in starts.items() if v[0] and abs(math.log(v[0] / best_lr)) <= math.log(4)}
    def paired_cells(a, b, fn, keep):
        vals = {k: fn(row[a], row[b]) for k, row in cells.items() if a in row and b in row and keep(k)}
        return bootstrap(per_task_mean(vals).values())
    wins_near = {f: paired_cells(policy, f, win, lambda k: k in near_cells) for f in families}
    wins_far = {f: paired_cells(policy, f, win, lambda k: k not in near_cells) for f in families}
    # The same by decade of start lr / tuned best lr.
    decade = lambda k: round(math.log10(starts[k][0] / best_lr))
    decades = sorted({decade(k) for k in starts if starts[k][0]})
    by_decade = {}
    for d in decades:
        keep = lambda k, d=d: k in starts and starts[k][0] and decade(k) == d
        by_decade[d] = {
            "cells": sum(1 for k in starts if keep(k)),
            "ln_vs_tuned_best": paired_cells(policy, tuned_best, ln_ratio, keep),
            "win": {f: paired_cells(policy, f, win, keep) for f in families},
        }
    t5 = paired(cells, policy, replay, ln_ratio)
    t5_win = paired(cells, policy, replay, win)

    # The starting-lr sweep.
    sweep = {}
    sweep_dirs = sorted(glob.glob(os.path.join(folder, "sweep-x*")))
    for d in sweep_dirs:
        factor = float(os.path.basename(d)[len("sweep-x"):])
        path = os.path.join(d, "results.jsonl")
        if exists(path):
            sweep[factor] = read_jsonl(path)
            if baselines:  # the schedule's sweep runs come from the baselines' folder
                other = os.path.join(base, os.path.basename(d), "results.jsonl")
                if exists(other):
                    sweep[factor] += [r for r in read_jsonl(other) if not r["controller"].startswith("policy:")]
    sweep_result = None
    if sweep:
        sweep_cfg = json.load(open(os.path.join(sweep_dirs[0], "config.json")))["comparison"]
        by = defaultdict(lambda: defaultdict(dict))  # controller -> (task, seed) -> factor -> loss
        sweep_div = defaultdict(int)
        for factor, rs in sweep.items():
            for r in rs:
                by[r["controller"]][(r["task_id"], r["seed"])][factor] = loss_of(r)
                sweep_div[r["controller"]] += r["diverged"]
        factors = sorted(sweep)
        sweep_result = {"factors": factors, "controllers": {}}
        for c, cs in by.items():
            complete = {k: v for k, v in cs.items() if len(v) == len(factors)}
            # ln(max / min) of the final loss over the starts: 0.049 is 5%.
            spread = {k: math.log(max(v.values()) / min(v.values())) for k, v in complete.items()}
            per_factor = {}
            for f in factors:
                vals = {k: math.log(v[f] / cells[k][tuned_best]) for k, v in complete.items() if tuned_best in cells[k]}
                per_factor[f] = bootstrap(per_task_mean(vals).values())
            sweep_result["controllers"][c] = {
                "spread": bootstrap(per_task_mean(spread).values()),
                "median_task_spread": sorted(per_task_mean(spread).values())[len(per_task_mean(spread)) // 2],
                "ln_vs_tuned_best_by_factor": per_factor,
                "diverged": sweep_div[c],
                "runs": sum(len(v) for v in cs.values()),
            }
        sweep_result["start"] = sweep_cfg.get("starts")

    result = {
        "policy": policy,
        "tuned_best": tuned_best,
        "tuned": chosen,
        "tasks": len(tasks),
        "tasks_by_source": {s: len([t for t in tasks if source_of(t) == s]) for s in sources},
        "seeds": seeds,
        "oracle_grid_size": grid_size,
        "table": table,
        "targets": {
            "ln_vs_tuned_best": {"value": t1, "by_source": t1_by_source, "target": LN_TARGET,
                                 "met": t1["mean"] <= LN_TARGET},
            "win_rate": {"value": wins, "by_source": wins_by_source, "target": WIN_TARGET,
                         "near_start": wins_near, "far_start": wins_far,
                         "near_cells": len(near_cells), "by_start_decade": by_decade,
                         "met": all(w["mean"] >= WIN_TARGET for w in wins.values())},
            "divergences": {"value": diverged.get(policy, 0), "runs": runs.get(policy, 0),
                            "which": diverged_runs.get(policy, []), "met": diverged.get(policy, 0) == 0},
            "sweep": {"value": sweep_result, "target": SWEEP_TARGET,
                      "met": None if not sweep_result or policy not in sweep_result["controllers"] else
                      sweep_result["controllers"][policy]["spread"]["mean"] <= SWEEP_TARGET},
            "vs_replay": {"ln": t5, "win_rate": t5_win, "met": t5["hi"] < 0},
            "vs_tuned_best": {"ln": t1, "verdict": verdict_vs(t1), "met": t1["lo"] <= 0},
            "with_rollback_guard": None if not has_guard else {
                "controller": guarded, "ln_vs_tuned_best": guard_t1, "by_source": guard_by_source,
                "win_rate": guard_wins,
                "diverged": diverged.get(guarded, 0), "runs": runs[guarded],
                "which": diverged_runs.get(guarded, [])},
        },
        "source": {"comparison": comparison, "meta": config.get("meta")},
    }

    # Markdown.
    md = []
    md.append(f"# Headline: `{policy}` from untuned starts\n")
    md.append(
        f"{len(tasks)} held-out tasks ({', '.join(f'{n} {s}' for s, n in result['tasks_by_source'].items())}) "
        f"× {seeds} seeds. Every task × seed starts from one untuned point (lr log-uniform over [1e-4, 1], "
        f"momentum 0 or 0.9) shared by the policy and every schedule family; the tuned schedules use the "
        f"setting chosen on meta-train; the oracle is, per task and seed (seeds 0-1 only), the best of "
        f"{grid_size} configurations of the best tuned family on the evaluated task itself; "
        f"`rollback(...)` is the policy with the deployment guard of `train --rollback`. Produced by "
        f"`experiments/headline/targets.py` from the runs in this folder.\n")
    md.append(f"Best single fixed schedule tuned on meta-train: **`{tuned_best}`**.\n")
    md.append("| controller | ln(loss / tuned best) ↓ | policy's win rate vs it | diverged |")
    md.append("|---|---|---|---|")
    for row in table:
        md.append(f"| `{row['controller']}` | {fmt(row['ln_vs_tuned_best'])} | "
                  f"{rate(row['policy_win_rate']) if row['policy_win_rate'] else '—'} | "
                  f"{row['diverged']}/{row['runs']} |")
    md.append("\n[95% bootstrap interval over tasks]; loss = final test loss, a diverged run counts as the "
              "untrained model's validation loss.\n")
    md.append("## Targets\n")
    md.append("| target | measured | met? |")
    md.append("|---|---|---|")
    tg = result["targets"]
    md.append(f"| mean ln(policy / tuned best) ≤ +{LN_TARGET} | {fmt(t1)}"
              + (f" (with the rollback guard: {fmt(guard_t1)})" if has_guard else "") + " | "
              f"{'yes' if tg['ln_vs_tuned_best']['met'] else 'no'} |")
    worst = min(wins.items(), key=lambda kv: kv[1]["mean"])
    guard_worst = min(guard_wins.items(), key=lambda kv: kv[1]["mean"]) if has_guard else None
    md.append(f"| win rate ≥ {WIN_TARGET:.0%} vs each family from the same start | lowest: "
              f"`{worst[0]}` {rate(worst[1])}"
              + (f" (with the rollback guard: `{guard_worst[0]}` {rate(guard_worst[1])})" if has_guard else "")
              + f" | {'yes' if tg['win_rate']['met'] else 'no'} |")
    md.append(f"| no divergences | {tg['divergences']['value']}/{tg['divergences']['runs']}"
              + (f" (with the rollback guard: {diverged.get(guarded, 0)}/{runs[guarded]})" if runs.get(guarded) else "")
              + f" | {'yes' if tg['divergences']['met'] else 'no'} |")
    if sweep_result and policy in sweep_result["controllers"]:
        sp = sweep_result["controllers"][policy]["spread"]
        med = sweep_result["controllers"][policy]["median_task_spread"]
        md.append(f"| final loss varies ≤ 5% across starts ×{', ×'.join(f'{f:g}' for f in sweep_result['factors'])} "
                  f"of the tuned lr | mean ln(max/min) {fmt(sp, 3, sign=False)} (median task {med:.3f}; 5% = 0.049) | "
                  f"{'yes' if tg['sweep']['met'] else 'no'} |")
    else:
        md.append("| starting-lr sweep | not run | — |")
    md.append(f"| better than its replay | ln(policy / replay) {fmt(t5)}, win rate {rate(t5_win)} | "
              f"{'yes' if tg['vs_replay']['met'] else 'no'} |")
    md.append(f"| not worse than tuned best at 95% | {fmt(t1)}: {verdict_vs(t1)} | "
              f"{'yes' if tg['vs_tuned_best']['met'] else 'no'} |")
    md.append("\n## By source\n")
    md.append("| source | tasks | ln(policy / tuned best) | "
              + ("with the rollback guard | " if has_guard else "")
              + " | ".join(f"win vs `{f}`" for f in families) + " |")
    md.append("|---|---|---|" + ("---|" if has_guard else "") + "---|" * len(families))
    for s in sources:
        md.append(f"| {s} | {result['tasks_by_source'][s]} | {fmt(t1_by_source[s])} | "
                  + (f"{fmt(guard_by_source[s])} | " if has_guard else "")
                  + " | ".join(rate(wins_by_source[f][s]) for f in families) + " |")
    md.append(f"\nPolicy's win rate by start: **near** = the shared start lr within ×4 of the tuned best's "
              f"({len(near_cells)} of {len(starts)} cells), **far** = the rest.\n")
    md.append("| family | near start | far start |")
    md.append("|---|---|---|")
    for f in families:
        md.append(f"| `{f}` | {rate(wins_near[f])} | {rate(wins_far[f])} |")
    md.append("\nBy decade of start lr / tuned best lr (0: within ×3.2; −2: about 100× lower):\n")
    md.append("| decade | cells | ln(policy / tuned best) | " + " | ".join(f"win vs `{f}`" for f in families) + " |")
    md.append("|---|---|---|" + "---|" * len(families))
    for d, v in by_decade.items():
        md.append(f"| {d:+d} | {v['cells']} | {fmt(v['ln_vs_tuned_best'])} | "
                  + " | ".join(rate(v["win"][f]) for f in families) + " |")
    if tg["divergences"]["which"]:
        md.append("\nPolicy divergences: " + "; ".join(tg["divergences"]["which"]) + ".")
    if sweep_result:
        md.append("\n## Starting-lr sweep\n")
        md.append(f"Seeds 0-1 of every task started from the tuned best's lr times the factor, with its "
                  f"momentum {sweep_result['start']['momenta'][0]}; the schedule is the tuned best's family "
                  f"taking its lr from the start. Spread: ln(max/min) over the starts of a task × seed's "
                  f"final loss (a diverged run counts as the untrained model's loss).\n")
        md.append("| controller | mean ln(max/min) over starts | median task | "
                  + " | ".join(f"ln(loss / tuned best) at ×{f:g}" for f in sweep_result["factors"]) + " | diverged |")
        md.append("|---|---|---|" + "---|" * len(sweep_result["factors"]) + "---|")
        for c, v in sweep_result["controllers"].items():
            md.append(f"| `{c}` | {fmt(v['spread'], 3, sign=False)} | {v['median_task_spread']:.3f} | "
                      + " | ".join(fmt(v["ln_vs_tuned_best_by_factor"][f]) for f in sweep_result["factors"])
                      + f" | {v['diverged']}/{v['runs']} |")
    text = "\n".join(md) + "\n"
    for name, content in [("targets.md", text), ("targets.json", json.dumps(result, indent=1))]:
        tmp = os.path.join(folder, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(content)
        os.replace(tmp, os.path.join(folder, name))

    def short(c):
        if c == policy:
            return "policy (untuned start)"
        if c == guarded:
            return "policy + rollback guard"
        if c == replay:
            return "replay(policy)"
        if c in tuned:
            return c.split(":")[0] + (" tuned: best single" if c == tuned_best else " tuned")
        if c in families:
            return c + " (untuned start)"
        return c
    svg_intervals(
        [(short(r["controller"]), r["ln_vs_tuned_best"]) for r in table if r["ln_vs_tuned_best"]],
        f"{len(tasks)} held-out tasks × {seeds} seeds, untuned starts",
        "mean ln(test loss / tuned best single schedule), 95% interval; lower is better; dashed: target +0.02",
        os.path.join(folder, "headline.svg"),
        target=LN_TARGET,
    )
    print(text)


if __name__ == "__main__":
    args = sys.argv[1:]
    baselines = None
    if "--baselines" in args:
        i = args.index("--baselines")
        baselines = args[i + 1]
        del args[i:i + 2]
    main(args[0] if args else "experiments/headline", baselines)
