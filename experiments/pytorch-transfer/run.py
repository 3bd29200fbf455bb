"""The PyTorch transfer benchmark: does a PyTorch user's loop with ``HyperctlLR`` get what hyperctl
measures in its own trainer, and how close is it to a tuned cosine?

One command (a venv with torch, numpy and the package: ``pip install ./crates/python``):

    python experiments/pytorch-transfer/run.py --out experiments/pytorch-transfer/results

For every workload of ``tasks.toml`` and every run seed, both paths train the SAME task: the split
is hyperctl's (``hyperctl tasks export``: standardized features and targets), the model is the
same MLP with the same initialisation scheme (uniform ±1/√fan_in, PyTorch's default for Linear),
the loss is the same (cross-entropy, or MSE on standardized targets), minibatches are a fresh
shuffle each epoch with the last partial batch kept, the budget is the same, and every run starts
from the same untuned (lr, momentum), drawn by ``hyperctl compare --untuned-starts`` from the
task id and seed. What differs: the weights' draw and the data order (each framework's own RNG),
and the float kernels.

Controllers: the shipped policy with the guard (PyTorch: ``HyperctlLR(guard=model)``; hyperctl:
``rollback(policy:policies/default)``), a cosine from the untuned start (PyTorch's
``CosineAnnealingLR``; hyperctl's ``cosine``), a constant lr from the start, and the reference: a
cosine with momentum 0.9 whose lr is tuned per workload on the validation loss (10 log-spaced lrs
over [1e-3, 1], mean final validation loss over the seeds), in each path separately. Reported:
ln(test loss / tuned cosine's test loss) per workload, averaged over runs, with a 95% interval,
and the gap between the paths.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from hyperctl.torch import HyperctlLR

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GRID = [float(f"{10 ** (-3 + 3 * i / 9):.4g}") for i in range(10)]
EXPLODE = 20.0  # the trainer's divergence rule: mean train loss > 20 x the untrained val loss


def sh(args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw)


# -- hyperctl's path ----------------------------------------------------------------------------


def hyperctl_compare(bin_, out, controllers, seeds, untuned, data_dir, jobs):
    cmd = [bin_, "compare", "--tasks", str(HERE / "tasks.toml"), "--split", "bench", "--seeds", str(seeds),
           "--jobs", str(jobs), "--data-dir", data_dir, "--out", str(out)]
    for c in controllers:
        cmd += ["--controller", c]
    if untuned:
        cmd.append("--untuned-starts")
    sh(cmd)
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]


# -- PyTorch's path -----------------------------------------------------------------------------


def export(bin_, task, seed, cache, data_dir):
    folder = cache / f"{task}-{seed}"
    if not (folder / "task.json").exists():
        sh([bin_, "tasks", "export", f"{HERE / 'tasks.toml'}#{task}", "--seed", str(seed), "--data-dir", data_dir,
            "--out", str(folder)])
    meta = json.loads((folder / "task.json").read_text())
    arrays = {name: torch.from_numpy(np.load(folder / f"{name}.npy"))
              for name in ["train_x", "train_y", "val_x", "val_y", "test_x", "test_y"]}
    return meta, arrays


@lru_cache(maxsize=8)
def cached_export(bin_, task, seed, cache, data_dir):
    """A worker's copy of one run's split (several jobs train on it)."""
    return export(bin_, task, seed, Path(cache), data_dir)


def build_model(meta, seed):
    spec = meta["task"]["model"]
    kind, _, rest = spec.partition(":")
    assert kind == "mlp", spec
    shape, _, act = rest.partition(":")
    width, depth = (int(v) for v in shape.split("x"))
    activation = {"": torch.nn.ReLU, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[act]
    out = meta["n_classes"] if meta["task_type"] == "classification" else 1
    torch.manual_seed(seed)
    layers, fan_in = [], meta["n_features"]
    for _ in range(depth):
        layers += [torch.nn.Linear(fan_in, width), activation()]
        fan_in = width
    layers.append(torch.nn.Linear(fan_in, out))
    return torch.nn.Sequential(*layers)


def loss_fn(meta):
    if meta["task_type"] == "classification":
        return lambda out, y: torch.nn.functional.cross_entropy(out, y.long())
    return lambda out, y: torch.nn.functional.mse_loss(out.squeeze(1), y)


@torch.no_grad()
def evaluate(model, x, y, loss):
    model.eval()
    value = float(loss(model(x), y))
    model.train()
    return value


def torch_job(job):
    """A worker process's run: (bin, data_dir, cache, task, seed, controller, lr, momentum, extra)."""
    bin_, data_dir, cache, task, seed, controller, lr, momentum, extra = job
    torch.set_num_threads(1)
    meta, arrays = cached_export(bin_, task, seed, cache, data_dir)
    out = torch_run(meta, arrays, seed, controller, lr, momentum)
    return dict(out, path="pytorch", task=task, seed=seed, controller=controller, init_lr=lr,
                init_momentum=momentum, **extra)


def torch_run(meta, arrays, seed, controller, lr, momentum):
    """One PyTorch training run; returns the record (test loss NaN when diverged)."""
    epochs, batch = meta["task"]["epochs"], meta["task"]["batch_size"]
    model = build_model(meta, seed)
    loss = loss_fn(meta)
    x, y = arrays["train_x"], arrays["train_y"]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    initial_val = evaluate(model, arrays["val_x"], arrays["val_y"], loss)
    sched = None
    if controller == "policy":
        sched = HyperctlLR(opt, epochs, guard=model, steps_per_epoch=math.ceil(len(y) / batch),
                           initial_val_loss=initial_val)
    elif controller == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    diverged, vals, lrs, rollbacks = False, [], [], 0
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        order = torch.randperm(len(y), generator=gen)
        losses = []
        for i in range(0, len(y), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            value = loss(model(x[idx]), y[idx])
            value.backward()
            opt.step()
            losses.append(float(value.detach()))
            if controller == "policy":
                sched.record_batch(value)
        val = evaluate(model, arrays["val_x"], arrays["val_y"], loss)
        vals.append(val)
        if controller == "policy":
            d = sched.step(val)
            rollbacks = sched.controller.rollbacks
            if d.diverged:
                diverged = True
                break
        else:
            bad = not all(math.isfinite(v) for v in losses) or not math.isfinite(val)
            if bad or statistics.fmean(losses) > EXPLODE * initial_val:
                diverged = True
                break
            if sched is not None:
                sched.step()
    test = float("nan") if diverged else evaluate(model, arrays["test_x"], arrays["test_y"], loss)
    return {"test_loss": test, "diverged": diverged, "val_loss": vals, "lrs": lrs, "rollbacks": rollbacks}


# -- the report ---------------------------------------------------------------------------------


def interval(values):
    """Mean and a 95% t-interval (normal beyond 30 values)."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    m = statistics.fmean(values)
    if n == 1:
        return m, float("nan"), float("nan")
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26}.get(n, 2.0)
    h = t * statistics.stdev(values) / math.sqrt(n)
    return m, m - h, m + h


def tuned(records, key_lr):
    """Per task: the grid lr with the lowest mean final validation loss, and its runs."""
    best = {}
    for task in sorted({r["task"] for r in records}):
        scores = {}
        for lr in GRID:
            runs = [r for r in records if r["task"] == task and key_lr(r) == lr]
            finals = [r["val_loss"][-1] if (r["val_loss"] and not r["diverged"]) else math.inf for r in runs]
            scores[lr] = statistics.fmean(finals) if finals else math.inf
        lr = min(scores, key=scores.get)
        best[task] = (lr, {r["seed"]: r for r in records if r["task"] == task and key_lr(r) == lr})
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--hyperctl", default=str(ROOT / "target" / "debug" / "hyperctl"),
                    help="the binary (the dev profile optimizes dependencies: as fast as --release)")
    ap.add_argument("--data-dir", default=os.environ.get("HYPERCTL_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--seeds", type=int, default=8, help="runs per workload (each its own untuned start)")
    ap.add_argument("--tune-seeds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    bin_ = args.hyperctl

    # 1. hyperctl's trainer: the untuned starts, and the tuning grid.
    untuned = hyperctl_compare(bin_, args.out / "hyperctl-untuned",
                               ["rollback(policy:policies/default)", "cosine", "constant"], args.seeds, True,
                               args.data_dir, args.jobs)
    grid = hyperctl_compare(bin_, args.out / "hyperctl-grid", [f"cosine:lr={lr},momentum=0.9" for lr in GRID],
                            args.tune_seeds, False, args.data_dir, args.jobs)
    print(f"hyperctl path done in {time.time() - started:.0f} s", file=sys.stderr)

    # 2. PyTorch: the same tasks, seeds and starts.
    cache = args.out / "exports"
    names = {"rollback(policy:policies/default)": "policy", "cosine": "cosine", "constant": "constant"}
    rows = [dict(r, path="hyperctl", task=r["task_id"], controller=names[r["controller"]]) for r in untuned]
    grid_rows = [dict(r, path="hyperctl", task=r["task_id"], lr=float(r["controller"].split("lr=")[1].split(",")[0]))
                 for r in grid]
    common = (bin_, args.data_dir, str(cache))
    # One start per (task, seed), read from hyperctl's records (every controller shares it).
    starts = sorted({(r["task_id"], r["seed"], r["init_lr"], r["init_momentum"]) for r in untuned})
    jobs = [common + (t, s, c, lr, m, {}) for t, s, lr, m in starts for c in ["policy", "cosine", "constant"]]
    tune = sorted({(r["task"], r["seed"]) for r in grid_rows})
    jobs += [common + (t, s, "cosine", lr, 0.9, {"lr": lr, "grid": True}) for t, s in tune for lr in GRID]
    for t, s in sorted({(j[3], j[4]) for j in jobs}):
        export(bin_, t, s, cache, args.data_dir)  # once, before the workers read them
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for out in pool.map(torch_job, jobs):
            (grid_rows if out.pop("grid", False) else rows).append(out)
    print(f"pytorch path done in {time.time() - started:.0f} s", file=sys.stderr)

    # 3. The report.
    ref = {path: tuned([g for g in grid_rows if g["path"] == path], lambda g: g["lr"]) for path in ["hyperctl", "pytorch"]}
    ref_test = {path: {t: statistics.fmean(r["test_loss"] for r in runs.values()) for t, (lr, runs) in ref[path].items()}
                for path in ref}
    summary = {"grid": GRID, "tuned_lr": {p: {t: lr for t, (lr, _) in ref[p].items()} for p in ref},
               "tuned_test_loss": ref_test, "workloads": {}}
    lines = ["# PyTorch transfer benchmark", "",
             f"{args.seeds} runs per workload (each its own untuned start and seed), tuned cosine: best of "
             f"{len(GRID)} lrs on validation over {args.tune_seeds} seeds, per path. Cells: mean ln(test loss / "
             "tuned cosine's) [95% interval] (diverged runs).", "",
             "| workload | path | policy (guarded) | cosine from start | constant from start | tuned cosine lr |",
             "|---|---|---|---|---|---|"]
    gaps = []
    for task in sorted({r["task"] for r in rows}):
        summary["workloads"][task] = {}
        for path in ["hyperctl", "pytorch"]:
            cells = []
            for controller in ["policy", "cosine", "constant"]:
                runs = [r for r in rows if r["task"] == task and r["path"] == path and r["controller"] == controller]
                ratios = [math.log(r["test_loss"] / ref_test[path][task]) for r in runs if not r["diverged"]]
                m, lo, hi = interval(ratios)
                div = sum(r["diverged"] for r in runs)
                summary["workloads"][task].setdefault(path, {})[controller] = {
                    "mean": m, "lo": lo, "hi": hi, "diverged": div, "runs": len(runs)}
                cells.append(f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}] ({div})")
            lines.append(f"| {task} | {path} | " + " | ".join(cells) + f" | {ref[path][task][0]:g} |")
        pol = {p: {r["seed"]: r for r in rows if r["task"] == task and r["path"] == p and r["controller"] == "policy"}
               for p in ["hyperctl", "pytorch"]}
        for seed in pol["hyperctl"]:
            a, b = pol["hyperctl"][seed], pol["pytorch"].get(seed)
            if b and not a["diverged"] and not b["diverged"]:
                gaps.append((task, math.log(b["test_loss"] / ref_test["pytorch"][task])
                             - math.log(a["test_loss"] / ref_test["hyperctl"][task])))
    m, lo, hi = interval([g for _, g in gaps])
    summary["path_gap"] = {"mean": m, "lo": lo, "hi": hi, "pairs": len(gaps)}
    lines += ["", f"Path gap (PyTorch − hyperctl, policy's ln ratio, paired by task and seed): "
                  f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}] over {len(gaps)} pairs.", ""]
    summary["provenance"] = {"seeds": args.seeds, "tune_seeds": args.tune_seeds, "torch": torch.__version__,
                             "hyperctl": bin_, "wall_secs": time.time() - started,
                             "git": sh(["git", "-C", str(ROOT), "rev-parse", "HEAD"]).stdout.strip()}
    (args.out / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + grid_rows))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
