#!/usr/bin/env bash
# Meta-training benchmark: the same short run (experiments/bench/meta_train.toml) on 1 core with
# the envs stepped one after another (`parallel_envs = false`: one thread, so the recorded times add
# up) and on 2 cores with the envs on parallel threads (the default), each under /usr/bin/time for
# its peak memory. Both give the same policy (results do not depend on the threads). Prints and writes
# experiments/bench/results/meta_train.json: wall time, the time breakdown from metrics.csv
# (rollout, PPO update, evaluation; env time and inner training summed over envs), the share of the
# training time spent outside the inner training (1 core), and the 1 -> 2 core speed-up.
# Usage: bash experiments/bench/meta_train.sh [CONFIG] [RESULT]   (Linux: needs taskset, /usr/bin/time)
#   defaults: experiments/bench/meta_train.toml, experiments/bench/results/meta_train.json
#   the balanced-task control: bash experiments/bench/meta_train.sh \
#     experiments/bench/meta_train_balanced.toml experiments/bench/results/meta_train_balanced.json
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${1:-experiments/bench/meta_train.toml}
result=${2:-experiments/bench/results/meta_train.json}
cargo build --release -q -p hyperctl
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sed 's/^\[ppo\]$/[ppo]\nparallel_envs = false/' "$base" > experiments/bench/.serial.toml
trap 'rm -rf "$out" experiments/bench/.serial.toml' EXIT
for cores in 1 2; do
  cpus=$([ "$cores" = 1 ] && echo 0 || echo 0,1)
  config=$([ "$cores" = 1 ] && echo experiments/bench/.serial.toml || echo "$base")
  /usr/bin/time -v -o "$out/time-$cores.txt" taskset -c "$cpus" ./target/release/hyperctl \
    meta-train --config "$config" --out "$out/run-$cores" 2> "$out/log-$cores.txt"
done
cmp "$out/run-1/weights.json" "$out/run-2/weights.json"   # same policy whatever the threads
mkdir -p experiments/bench/results
python3 - "$out" "$result" "$base" <<'PY'
import csv, json, os, platform, re, subprocess, sys, datetime
out, dest, config = sys.argv[1], sys.argv[2], sys.argv[3]
runs = {}
for cores in (1, 2):
    rows = list(csv.DictReader(open(f"{out}/run-{cores}/metrics.csv")))
    total = lambda k: sum(float(r[k]) for r in rows)
    time_txt = open(f"{out}/time-{cores}.txt").read()
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_txt).group(1))
    steps = int(rows[-1]["global_step"])
    rollout, update, ev = total("rollout_secs"), total("update_secs"), total("eval_secs")
    env, train, reset = total("env_secs"), total("train_secs"), total("reset_secs")
    runs[cores] = {
        "cores": cores, "iterations": len(rows), "env_steps": steps,
        "wall_secs": float(rows[-1]["wall_secs"]), "rollout_secs": rollout, "update_secs": update,
        "eval_secs": ev, "env_secs_summed": env, "inner_train_secs_summed": train, "reset_secs_summed": reset,
        "rollout_steps_per_s": steps / rollout, "peak_rss_mib": rss_kb / 1024,
    }
one, two = runs[1], runs[2]
training = one["rollout_secs"] + one["update_secs"]
summary = {
    "benchmark": "meta_train", "date": datetime.date.today().isoformat(),
    "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
    "git_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "config": config, "backend": "flex", "seed": 1,
    "runs": [one, two],
    # One core, envs stepped serially: the parts add up to the training time.
    "share_outside_inner_training_1core": 1 - one["inner_train_secs_summed"] / training,
    "share_ppo_update_1core": one["update_secs"] / training,
    # Env steps outside the inner training: featurizing, the reward, bookkeeping.
    "share_featurizing_and_env_steps_1core": (one["env_secs_summed"] - one["inner_train_secs_summed"] - one["reset_secs_summed"]) / training,
    # Starting episodes: the task's data and model, the first validation pass.
    "share_episode_starts_1core": one["reset_secs_summed"] / training,
    "share_policy_forward_and_rollout_bookkeeping_1core": (one["rollout_secs"] - one["env_secs_summed"]) / training,
    "same_policy_1_and_2_cores": True,
    "rollout_speedup_1_to_2_cores": two["rollout_steps_per_s"] / one["rollout_steps_per_s"],
    "training_speedup_1_to_2_cores": training / (two["rollout_secs"] + two["update_secs"]),
    "eval_speedup_1_to_2_cores": one["eval_secs"] / two["eval_secs"],
    "peak_rss_mib_2cores": two["peak_rss_mib"],
}
tmp = dest + ".tmp"
json.dump(summary, open(tmp, "w"), indent=1)
os.replace(tmp, dest)
print(json.dumps(summary, indent=1))
PY
