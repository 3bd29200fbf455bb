"""Cross-checks hyperctl's optimizers, parameter-free step rules and averagers against their
reference PyTorch implementations, step by step.

hyperctl traces each method on one tiny task (`crates/tasks/examples/rule_trace.rs`: the data,
the model's initial weights, and the train and validation loss after every full-batch step);
this script rebuilds the same model in PyTorch from those weights, runs the reference optimizer
(torch.optim.SGD / AdamW, dog-optimizer's DoG, LDoG and PolynomialDecayAverager, schedulefree's
SGDScheduleFree and AdamWScheduleFree, prodigyopt's Prodigy, dadaptation's DAdaptSGD) with the
same hyperparameters, and reports the largest relative difference of the two loss trajectories.

Usage, from the repository root, in a venv with torch and the reference packages
(pip install torch dog-optimizer==1.0.3 schedulefree==1.4.1 prodigyopt==1.1.2 dadaptation==3.2):

    python experiments/param-free-crosscheck/crosscheck.py [--steps 50] [--out DIR]

It runs `cargo run -p hyperctl-tasks --example rule_trace` itself (or reads --trace FILE).
Exit status 1 when a method's trajectories differ by more than --tolerance (default 1e-4).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
from importlib.metadata import version

import torch
import torch.nn.functional as F

import dadaptation
import dog
import prodigyopt
import schedulefree


def build_model(params):
    """An MLP from hyperctl's parameters: pairs of (weight [in, out], bias [out])."""
    layers = []
    for i in range(0, len(params), 2):
        w, b = params[i], params[i + 1]
        n_in, n_out = w["shape"]
        lin = torch.nn.Linear(n_in, n_out)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(w["values"], dtype=torch.float32).reshape(n_in, n_out).T)
            lin.bias.copy_(torch.tensor(b["values"], dtype=torch.float32))
        layers.append(lin)
    return layers


def forward(layers, x):
    for lin in layers[:-1]:
        x = torch.tanh(lin(x))
    return layers[-1](x)


class Net(torch.nn.Module):
    def __init__(self, params):
        super().__init__()
        self.layers = torch.nn.ModuleList(build_model(params))

    def forward(self, x):
        return forward(list(self.layers), x)


def make_optimizer(name, run, model, steps):
    wd = run["weight_decay"]
    method = run["method"]
    rule = method["rule"]
    warmup = None
    if rule["rule"] == "schedule-free":
        warmup = round(rule["warmup_fraction"] * steps)
    lr0, m0 = run["lr"][0], run["momentum"][0]
    p = model.parameters()
    if rule["rule"] == "inner":
        if run["optimizer"] == "sgd":
            return torch.optim.SGD(p, lr=lr0, momentum=m0, weight_decay=wd)
        return torch.optim.AdamW(p, lr=lr0, betas=(m0, 0.999), eps=1e-8, weight_decay=wd)
    if rule["rule"] == "dog":
        cls = dog.LDoG if rule["layerwise"] else dog.DoG
        return cls(p, reps_rel=rule["reps_rel"], weight_decay=wd)
    if rule["rule"] == "schedule-free":
        if run["optimizer"] == "sgd":
            return schedulefree.SGDScheduleFree(
                p, lr=lr0, momentum=rule["beta"], weight_decay=wd, warmup_steps=warmup,
                weight_lr_power=rule["weight_lr_power"])
        return schedulefree.AdamWScheduleFree(
            p, lr=lr0, betas=(rule["beta"], 0.999), weight_decay=wd, warmup_steps=warmup,
            weight_lr_power=rule["weight_lr_power"])
    if rule["rule"] == "prodigy":
        return prodigyopt.Prodigy(p, lr=1.0, d0=rule["d0"], weight_decay=wd)
    if rule["rule"] == "d-adapt-sgd":
        return dadaptation.DAdaptSGD(p, lr=1.0, d0=rule["d0"], momentum=rule["momentum"],
                                     weight_decay=wd)
    raise ValueError(f"{name}: unknown rule {rule}")


def replay(name, run, trace):
    steps = trace["steps"]
    torch.manual_seed(0)
    model = Net(trace["params"])
    xt = torch.tensor(trace["train"]["x"], dtype=torch.float32).reshape(trace["train"]["rows"], -1)
    yt = torch.tensor(trace["train"]["y"], dtype=torch.float32).long()
    xv = torch.tensor(trace["val"]["x"], dtype=torch.float32).reshape(trace["val"]["rows"], -1)
    yv = torch.tensor(trace["val"]["y"], dtype=torch.float32).long()
    opt = make_optimizer(name, run, model, steps)
    average = run["method"].get("average")
    averager, ema = None, None
    if average and average["average"] == "poly-decay":
        averager = dog.PolynomialDecayAverager(model, gamma=average["gamma"])
    elif average and average["average"] == "ema":
        ema = [q.detach().clone() for q in model.parameters()]
    schedule_free = hasattr(opt, "train") and hasattr(opt, "eval") and "k" in opt.param_groups[0]
    if schedule_free:
        opt.train()
    train, val = [], []
    for t in range(steps):
        for g in opt.param_groups:
            if run["method"]["rule"]["rule"] == "inner":
                g["lr"] = run["lr"][t]
                if run["optimizer"] == "sgd":
                    g["momentum"] = run["momentum"][t]
                else:
                    g["betas"] = (run["momentum"][t], g["betas"][1])
        opt.zero_grad()
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        train.append(loss.item())
        if averager is not None:
            averager.step()
        if ema is not None:
            with torch.no_grad():
                for a, q in zip(ema, model.parameters()):
                    a.mul_(average["decay"]).add_(q.detach(), alpha=1 - average["decay"])
        with torch.no_grad():
            if schedule_free:
                opt.eval()
            if averager is not None:
                out = averager.averaged_model(xv)
            elif ema is not None:
                out = forward_with(model, ema, xv)
            else:
                out = model(xv)
            val.append(F.cross_entropy(out, yv).item())
            if schedule_free:
                opt.train()
    return train, val


def forward_with(model, weights, x):
    saved = [q.detach().clone() for q in model.parameters()]
    with torch.no_grad():
        for q, w in zip(model.parameters(), weights):
            q.copy_(w)
        out = model(x)
        for q, s in zip(model.parameters(), saved):
            q.copy_(s)
    return out


def max_rel(a, b):
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--trace", help="a trace written by rule_trace (default: run it)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    trace_path = args.trace or os.path.join(args.out, "trace.json")
    if not args.trace:
        subprocess.run(["cargo", "run", "-q", "-p", "hyperctl-tasks", "--example", "rule_trace",
                        "--", trace_path, str(args.steps)], check=True)
    trace = json.load(open(trace_path))
    rows, failed = [], []
    print(f"{'method':<22} {'max rel diff train':>18} {'max rel diff val':>17} "
          f"{'final train (ours / ref)':>26}")
    for name, run in trace["runs"].items():
        train, val = replay(name, run, trace)
        dt, dv = max_rel(run["train_loss"], train), max_rel(run["val_loss"], val)
        ok = dt <= args.tolerance and dv <= args.tolerance
        if not ok:
            failed.append(name)
        rows.append({"method": name, "max_rel_diff_train": dt, "max_rel_diff_val": dv,
                     "final_train_ours": run["train_loss"][-1], "final_train_ref": train[-1],
                     "final_val_ours": run["val_loss"][-1], "final_val_ref": val[-1],
                     "within_tolerance": ok})
        print(f"{name:<22} {dt:>18.2e} {dv:>17.2e} "
              f"{run['train_loss'][-1]:>12.6f} / {train[-1]:<12.6f}{'' if ok else '  MISMATCH'}")
    result = {
        "steps": trace["steps"],
        "task": trace["task"],
        "tolerance": args.tolerance,
        "references": {pkg: version(pkg) for pkg in
                       ["torch", "dog-optimizer", "schedulefree", "prodigyopt", "dadaptation"]},
        "python": platform.python_version(),
        "rows": rows,
    }
    with open(os.path.join(args.out, "crosscheck.json"), "w") as f:
        json.dump(result, f, indent=1)
    if failed:
        print(f"MISMATCH beyond {args.tolerance:g}: {', '.join(failed)}")
        sys.exit(1)
    print(f"all {len(rows)} methods agree within {args.tolerance:g} over {trace['steps']} steps")


if __name__ == "__main__":
    main()
