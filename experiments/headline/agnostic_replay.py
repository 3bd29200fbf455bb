"""Fits issue 19's task-agnostic replay: per start-lr decade, a controller's mean lr/momentum
trajectory over all tasks of a comparison (normally the policy on meta-train from untuned
starts), in relative time, written as a `hyperctl-open-loop/1` file for `open-loop:FILE`
(crates/controllers/src/open_loop.rs).

    python3 experiments/headline/agnostic_replay.py RESULTS.jsonl[.gz] CONTROLLER OUT.json [BINS]

A run of T intervals contributes to bin b (of BINS, default 20) the lr and momentum of its
interval floor((b + 1/2) T / BINS); per decade and bin, the lr is the geometric mean and the
momentum the arithmetic mean over the runs. Diverged runs are left out (their trajectories stop
early, so their relative time is unknown); the file records how many runs each decade has.
"""
import gzip, json, math, sys
from collections import defaultdict


def read(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    path, controller, out = sys.argv[1:4]
    bins = int(sys.argv[4]) if len(sys.argv) == 5 else 20
    runs = [r for r in read(path) if r["controller"] == controller]
    if not runs:
        sys.exit(f"error: {path}: no runs of controller `{controller}`")
    kept = [r for r in runs if not r["diverged"] and r["lr"]]
    by_decade = defaultdict(list)
    for r in kept:
        by_decade[math.floor(math.log10(r["init_lr"]))].append(r)
    decades = []
    for d, rs in sorted(by_decade.items()):
        lr, mom = [], []
        for b in range(bins):
            at = [(r["lr"][min(len(r["lr"]) - 1, int((b + 0.5) * len(r["lr"]) / bins))],
                   r["momentum"][min(len(r["momentum"]) - 1, int((b + 0.5) * len(r["momentum"]) / bins))])
                  for r in rs]
            lr.append(math.exp(sum(math.log(max(a, 1e-12)) for a, _ in at) / len(at)))
            mom.append(min(sum(m for _, m in at) / len(at), 0.999))
        decades.append({"log10_lr": d, "runs": len(rs), "lr": lr, "momentum": mom})
    doc = {"format": "hyperctl-open-loop/1",
           "source": f"{controller} on {path}: {len(kept)} of {len(runs)} runs (diverged left out), {bins} bins",
           "decades": decades}
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    for x in decades:
        print(f"decade 1e{x['log10_lr']}: {x['runs']} runs, lr {x['lr'][0]:.3g} -> {x['lr'][bins // 2]:.3g} -> {x['lr'][-1]:.3g}")


main()
