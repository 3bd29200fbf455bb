#!/usr/bin/env bash
# Meta-training with Ray-placed workers on one machine (issue 18), and a killed worker:
#   1. a venv with ray (VENV, default /tmp/hyperctl-ray-venv; reused when present);
#   2. `ray start --head --num-cpus 2` on loopback;
#   3. the reference: the same config with `--workers 0` (threads, no Ray);
#   4. `python -m hyperctl.cluster --workers 2` (crates/python/python/hyperctl/cluster.py) on the
#      config, SIGKILL of one `hyperctl worker --connect` process after the first iteration;
#   5. the policy and every evaluation must equal the reference; `ray stop` at the end.
# Writes experiments/ray/results/ray_run.json (wall times: local workers vs Ray, the loss, the
# check). Usage: bash experiments/ray/run.sh [CONFIG]
#   default CONFIG: experiments/ray/meta_train.toml (the smoke tasks, 4 envs, 6 iterations)
#   HYPERCTL_BIN=PATH uses that build instead of building --release (CI: the test build);
#   VENV=DIR the venv (default /tmp/hyperctl-ray-venv); KEEP=1 keeps the run folders.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
config=${1:-experiments/ray/meta_train.toml}
venv=${VENV:-/tmp/hyperctl-ray-venv}
bin=${HYPERCTL_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p hyperctl
  bin=$root/target/release/hyperctl
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
if [ ! -x "$venv/bin/ray" ]; then
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install -q ray; then
    echo "SKIPPED: the Ray check (cannot install ray from PyPI)" >&2
    exit 0
  fi
fi
out=$(mktemp -d)
cleanup() { "$venv/bin/ray" stop --force > /dev/null 2>&1 || true; [ -n "${KEEP:-}" ] || rm -rf "$out"; }
trap cleanup EXIT
"$venv/bin/ray" stop --force > /dev/null 2>&1 || true
"$venv/bin/ray" start --head --num-cpus 2 --node-ip-address 127.0.0.1 --include-dashboard false \
  --disable-usage-stats > "$out/ray-start.log" 2>&1

t0=$(date +%s.%N)
"$bin" meta-train --config "$config" --out "$out/reference" --workers 0 2> "$out/reference.log" > /dev/null
t1=$(date +%s.%N)
"$bin" meta-train --config "$config" --out "$out/local" --workers 2 2> "$out/local.log" > /dev/null
t2=$(date +%s.%N)

# The Ray run, with one worker killed after the learner logs its first iteration.
"$venv/bin/python" crates/python/python/hyperctl/cluster.py --workers 2 \
  --address auto --hyperctl "$bin" -- --config "$config" --out "$out/ray" \
  > "$out/ray.stdout" 2> "$out/ray.log" &
launcher=$!
killed=""
for _ in $(seq 600); do
  if [ -z "$killed" ] && grep -q "^iteration 1/" "$out/ray.log" 2>/dev/null; then
    victim=$(pgrep -f "hyperctl worker --connect" | head -1 || true)
    if [ -n "$victim" ]; then kill -9 "$victim"; killed=$victim; fi
  fi
  kill -0 $launcher 2> /dev/null || break
  sleep 0.1
done
wait $launcher || { echo "the Ray run failed:"; cat "$out/ray.log"; exit 1; }
t3=$(date +%s.%N)
cat "$out/ray.log" | grep -v "^iteration" | sed 's/^/  ray: /' | head -40
[ -n "$killed" ] || { echo "no worker was killed (the run ended first?)"; exit 1; }
grep -q "lost" "$out/ray.log" || { echo "the learner never noticed the killed worker"; exit 1; }
mkdir -p experiments/ray/results
python3 - "$out" "$config" "$t0" "$t1" "$t2" "$t3" "$killed" <<'PY'
import json, os, sys, datetime, subprocess, platform
out, config, t0, t1, t2, t3, killed = sys.argv[1:8]
t0, t1, t2, t3 = map(float, (t0, t1, t2, t3))
def results(name):
    evals = [json.loads(l) for l in open(f"{out}/{name}/eval.jsonl")]
    return open(f"{out}/{name}/weights.json").read(), [(e["mean_return"], e["per_task"]) for e in evals]
ref, local, ray = results("reference"), results("local"), results("ray")
log = open(f"{out}/ray.log").read()
import csv, statistics
def per_iteration(name):
    walls = [float(r["wall_secs"]) for r in csv.DictReader(open(f"{out}/{name}/metrics.csv"))]
    return statistics.median(b - a for a, b in zip([0.0] + walls, walls))
summary = {
    "benchmark": "ray_meta_train", "date": datetime.date.today().isoformat(),
    "git_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
    "config": config, "backend": "flex",
    "wall_secs": {"threads": t1 - t0, "local_workers_2": t2 - t1, "ray_workers_2_with_one_killed": t3 - t2},
    # Per iteration (rollout, update, evaluation; from metrics.csv): the start-up excluded. The
    # Ray run's median includes no restart (one iteration has it).
    "iteration_secs_median": {"threads": per_iteration("reference"), "local_workers_2": per_iteration("local"), "ray_workers_2": per_iteration("ray")},
    "killed_worker_pid": int(killed),
    "learner_noticed_loss": "lost" in log,
    "same_policy_local_workers_as_threads": local == ref,
    "same_policy_ray_with_killed_worker_as_threads": ray == ref,
}
tmp = "experiments/ray/results/ray_run.json.tmp"
json.dump(summary, open(tmp, "w"), indent=1)
os.replace(tmp, "experiments/ray/results/ray_run.json")
print(json.dumps(summary, indent=1))
sys.exit(0 if ray == ref and local == ref else "the Ray run gave another policy")
PY
