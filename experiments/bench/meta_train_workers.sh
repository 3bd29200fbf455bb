#!/usr/bin/env bash
# Meta-training in worker processes vs threads (issue 18): the short run of
# experiments/bench/meta_train.toml (the shipped recipe cut to 12 iterations) four ways, each
# pinned with taskset and under a memory sampler:
#   1 core : threads, envs stepped one after another (parallel_envs = false)   -- the baseline
#   1 core : --workers 1 (one worker process holds every env)
#   2 cores: --workers 0 (threads in one process, the old default)
#   2 cores: --workers 2 (two worker processes)
# All four must give the same policy (checked with cmp). Prints and writes
# experiments/bench/results/meta_train_workers.json: wall time and its parts, env steps/s of the
# rollout, speed-ups against the 1-core baseline, and peak RSS of the learner and of each worker.
# Usage: bash experiments/bench/meta_train_workers.sh [CONFIG] [RESULT]   (Linux: taskset, /proc)
#   HYPERCTL_BIN=target/debug/hyperctl uses that build instead of building --release (the dev
#   profile is opt-level 2: the same speed).
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${1:-experiments/bench/meta_train.toml}
result=${2:-experiments/bench/results/meta_train_workers.json}
if [ -z "${HYPERCTL_BIN:-}" ]; then
  cargo build --release -q -p hyperctl
fi
export HYPERCTL_BIN=${HYPERCTL_BIN:-./target/release/hyperctl}
out=$(mktemp -d)
serial=experiments/bench/.serial-workers.toml
trap 'rm -rf "$out" "$serial"' EXIT
sed 's/^\[ppo\]$/[ppo]\nparallel_envs = false/' "$base" > "$serial"
mkdir -p experiments/bench/results
python3 - "$out" "$result" "$base" "$serial" <<'PY'
import csv, json, os, platform, subprocess, sys, time, datetime
out, dest, config, serial = sys.argv[1:5]
exe = os.environ["HYPERCTL_BIN"]

def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None

def children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry))
    return kids

def run(name, cpus, cfg, workers):
    folder = f"{out}/{name}"
    cmd = ["taskset", "-c", cpus, exe, "meta-train", "--config", cfg, "--out", folder,
           "--workers", str(workers)]
    log = open(f"{out}/{name}.log", "w")
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=log, stderr=log)
    peak_learner, peak_workers = 0, {}
    while p.poll() is None:
        peak_learner = max(peak_learner, rss_kib(p.pid) or 0)
        for k in children(p.pid):
            peak_workers[k] = max(peak_workers.get(k, 0), rss_kib(k) or 0)
        time.sleep(0.2)
    if p.returncode != 0:
        sys.exit(f"{name} failed: see {out}/{name}.log\n" + open(f"{out}/{name}.log").read())
    elapsed = time.time() - t0
    rows = list(csv.DictReader(open(f"{folder}/metrics.csv")))
    total = lambda k: sum(float(r[k]) for r in rows)
    steps = int(rows[-1]["global_step"])
    rollout, update, ev = total("rollout_secs"), total("update_secs"), total("eval_secs")
    return {
        "name": name, "cores": len(cpus.split(",")), "workers": workers,
        "process_wall_secs": elapsed, "training_wall_secs": float(rows[-1]["wall_secs"]),
        "rollout_secs": rollout, "update_secs": update, "eval_secs": ev,
        "env_secs_summed": total("env_secs"), "inner_train_secs_summed": total("train_secs"),
        "rollout_steps_per_s": steps / rollout, "env_steps": steps, "iterations": len(rows),
        "peak_rss_mib_learner": peak_learner / 1024,
        "peak_rss_mib_per_worker": sorted(v / 1024 for v in peak_workers.values()),
    }

runs = [
    run("1core-threads", "0", serial, 0),
    run("1core-1worker", "0", config, 1),
    run("2cores-threads", "0,1", config, 0),
    run("2cores-2workers", "0,1", config, 2),
]
weights = [open(f"{out}/{r['name']}/weights.json", "rb").read() for r in runs]
same = all(w == weights[0] for w in weights)
base = runs[0]
for r in runs:
    r["speedup_training_vs_1core_threads"] = (base["rollout_secs"] + base["update_secs"]) / (r["rollout_secs"] + r["update_secs"])
    r["speedup_rollout_steps_per_s_vs_1core_threads"] = r["rollout_steps_per_s"] / base["rollout_steps_per_s"]
    r["speedup_eval_vs_1core_threads"] = base["eval_secs"] / r["eval_secs"]
    r["speedup_wall_vs_1core_threads"] = base["training_wall_secs"] / r["training_wall_secs"]
summary = {
    "benchmark": "meta_train_workers", "date": datetime.date.today().isoformat(),
    "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
    "git_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "config": config, "backend": "flex", "seed": 1,
    "same_policy_all_runs": same,
    "runs": runs,
    "workers2_vs_1worker_training": (runs[1]["rollout_secs"] + runs[1]["update_secs"]) / (runs[3]["rollout_secs"] + runs[3]["update_secs"]),
    "workers2_vs_threads2_training": (runs[2]["rollout_secs"] + runs[2]["update_secs"]) / (runs[3]["rollout_secs"] + runs[3]["update_secs"]),
}
tmp = dest + ".tmp"
json.dump(summary, open(tmp, "w"), indent=1)
os.replace(tmp, dest)
print(json.dumps(summary, indent=1))
if not same:
    sys.exit("the runs gave different policies")
PY
