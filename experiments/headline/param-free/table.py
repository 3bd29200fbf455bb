#!/usr/bin/env python3
"""The headline table with the parameter-free competitors (stdlib only).

Usage, from the repository root, after run.sh:

    python3 experiments/headline/param-free/table.py

Reads run/results.jsonl (or its .gz copy) and writes table.md, table.json and table.svg beside
this script. Definitions as in experiments/headline/targets.py and `hyperctl compare`: a run's
loss is its final test loss (a diverged run counts as the untrained model's validation loss);
per (task, seed) cell ln(loss / the tuned schedule's loss), averaged over seeds within a task,
then over tasks; 95% percentile bootstrap over tasks (2000 resamples, fixed seed); win rate
1 / ½ / 0 per cell. An interval containing 0 is a tie.
"""

import gzip
import json
import math
import os
import random
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
TUNED = "warmup-cosine:lr=8.577e-2,momentum=0.9"
POLICY = "policy:policies/default"
# The cross-seed oracle comes from experiments/headline/oracle (seeds 0-1 only; its grid on five
# seeds would cost 32x this whole run): re-summarized in oracle/summary-with-cross-seed.md.
ORACLE_NOTE = {
    "oracle-cross-seed (seeds 0-1, from experiments/headline/oracle)": (-0.125, -0.125),
    "oracle in-sample (seeds 0-1, from experiments/headline/oracle)": (-0.255, -0.255),
}


def load():
    path = os.path.join(HERE, "run", "results.jsonl")
    opener = open
    if not os.path.exists(path):
        path += ".gz"
        opener = gzip.open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def loss(r):
    t = r.get("test_loss")
    if r.get("diverged") or t is None or not math.isfinite(t):
        return r["initial_val_loss"]
    return t


def group(task):
    return task.split("/", 1)[0]


def bootstrap(per_task, n=2000, seed=0):
    rng = random.Random(seed)
    values = list(per_task.values())
    means = sorted(sum(rng.choice(values) for _ in values) / len(values) for _ in range(n))
    return means[int(0.025 * n)], means[int(0.975 * n) - 1]


def stats(cells, controller, reference, fn):
    per_task = defaultdict(list)
    for (task, seed), by in cells.items():
        if controller in by and reference in by:
            per_task[task].append(fn(by[controller], by[reference]))
    per_task = {t: sum(v) / len(v) for t, v in per_task.items()}
    mean = sum(per_task.values()) / len(per_task)
    lo, hi = bootstrap(per_task)
    return mean, lo, hi, per_task


def ln_ratio(a, b):
    return math.log(max(loss(a), 1e-12) / max(loss(b), 1e-12))


def win(a, b):
    la, lb = loss(a), loss(b)
    return 1.0 if la < lb else 0.5 if la == lb else 0.0


def main():
    records = load()
    cells = defaultdict(dict)
    controllers = []
    for r in records:
        cells[(r["task_id"], r["seed"])][r["controller"]] = r
        if r["controller"] not in controllers:
            controllers.append(r["controller"])
    n_tasks = len({t for t, _ in cells})
    n_cells = len(cells)
    rows = []
    for c in controllers:
        mean, lo, hi, per_task = stats(cells, c, TUNED, ln_ratio)
        groups = defaultdict(list)
        for t, v in per_task.items():
            groups[group(t)].append(v)
        row = {
            "controller": c,
            "ln_vs_tuned": mean,
            "ci": [lo, hi],
            "by_group": {g: sum(v) / len(v) for g, v in sorted(groups.items())},
            "diverged": sum(1 for by in cells.values() if c in by and by[c].get("diverged")),
            "runs": sum(1 for by in cells.values() if c in by),
        }
        if c != POLICY:
            w, wlo, whi, _ = stats(cells, POLICY, c, win)
            row["policy_win_rate"] = [w, wlo, whi]
            d, dlo, dhi, _ = stats(cells, POLICY, c, ln_ratio)
            row["policy_vs_it"] = [d, dlo, dhi]
        rows.append(row)
    out = {"tasks": n_tasks, "cells": n_cells, "reference": TUNED, "rows": rows,
           "oracle_from_recorded_run": ORACLE_NOTE}
    with open(os.path.join(HERE, "table.json"), "w") as f:
        json.dump(out, f, indent=1)

    def fmt(x):
        return f"{x:+.3f}"

    lines = [
        f"# Headline with the parameter-free competitors: {n_tasks} held-out tasks × 5 seeds",
        "",
        "ln(test loss / the tuned schedule's) per cell, mean over seeds then tasks, [95% bootstrap "
        "over tasks]; lower is better; 0 = the best single tuned schedule (warmup-cosine, lr "
        "0.0858, momentum 0.9, tuned on meta-train). Same untuned starts for every controller.",
        "",
        "| controller | ln(loss / tuned) ↓ | generated | MNIST | tabular | policy − it (ln) | "
        "policy's win rate vs it | diverged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: r["ln_vs_tuned"]):
        g = row["by_group"]
        vs = row.get("policy_vs_it")
        wr = row.get("policy_win_rate")
        lines.append(
            f"| `{row['controller']}` | {fmt(row['ln_vs_tuned'])} [{fmt(row['ci'][0])}, "
            f"{fmt(row['ci'][1])}] | {fmt(g.get('generated', float('nan')))} | "
            f"{fmt(g.get('mnist', float('nan')))} | {fmt(g.get('tabular', float('nan')))} | "
            + (f"{fmt(vs[0])} [{fmt(vs[1])}, {fmt(vs[2])}]" if vs else "—")
            + " | "
            + (f"{wr[0]:.2f} [{wr[1]:.2f}, {wr[2]:.2f}]" if wr else "—")
            + f" | {row['diverged']}/{row['runs']} |"
        )
    for name, (v, _) in ORACLE_NOTE.items():
        lines.append(f"| {name} | {fmt(v)} | | | | | | |")
    with open(os.path.join(HERE, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    write_svg(sorted(rows, key=lambda r: r["ln_vs_tuned"]))


def write_svg(rows):
    """Each controller's mean ln(loss / tuned) with its 95% interval, as horizontal bars."""
    width, left, right, top, bar = 900, 330, 40, 40, 26
    height = top + bar * len(rows) + 50
    lo = min(min(r["ci"][0] for r in rows), -0.05)
    hi = max(max(r["ci"][1] for r in rows), 0.05)
    span = hi - lo

    def x(v):
        return left + (v - lo) / span * (width - left - right)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="13">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="22">ln(test loss / tuned warmup-cosine), 163 held-out tasks × 5 '
        'seeds, 95% bootstrap interval</text>',
        f'<line x1="{x(0)}" y1="{top - 5}" x2="{x(0)}" y2="{height - 40}" stroke="#444" '
        'stroke-dasharray="4,3"/>',
    ]
    for i, r in enumerate(rows):
        y = top + i * bar
        color = "#c0392b" if r["controller"].startswith(("policy", "average(policy")) else "#2e86c1"
        parts.append(f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">'
                     f'{r["controller"].replace("&", "&amp;")}</text>')
        x0, x1 = sorted((x(0), x(r["ln_vs_tuned"])))
        parts.append(f'<rect x="{x0}" y="{y + 6}" width="{max(x1 - x0, 1)}" height="14" '
                     f'fill="{color}" opacity="0.55"/>')
        parts.append(f'<line x1="{x(r["ci"][0])}" y1="{y + 13}" x2="{x(r["ci"][1])}" '
                     f'y2="{y + 13}" stroke="black" stroke-width="2"/>')
    for t in [v / 10 for v in range(math.ceil(lo * 10), math.floor(hi * 10) + 1)]:
        parts.append(f'<text x="{x(t)}" y="{height - 22}" text-anchor="middle">{t:+.1f}</text>')
    parts.append("</svg>")
    with open(os.path.join(HERE, "table.svg"), "w") as f:
        f.write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
