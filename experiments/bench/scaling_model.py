"""Expected meta-training speed-up at W workers, by simulation from measured per-step costs
(issue 18, item 4). Not a measurement: a model calibrated on one.

Inputs:
- the meta-train tasks' cost estimates (`hyperctl tasks list envs/default.toml --split meta-train
  --json`: minibatch steps x parameters per episode; one decision per epoch), scaled so their mean
  per decision equals the measured mean inner-training time per decision of the 1-core run
  (results/meta_train_workers.json);
- the measured PPO update time per iteration per env (it grows with the batch and runs on the
  learner alone). Messages and the policy forward (~1.5 ms per step measured) are left out.

Two rollout schemes, both with W workers and E = W envs (one env per worker: the most a worker
count can use) and 128 decisions per env per iteration:
- lockstep (what `meta-train --workers` does now): every step waits for the busiest worker; an
  env goes to the least loaded worker at each episode start;
- segments (a possible redesign, issue notes): each worker runs its envs' 128 decisions with the
  iteration's policy without waiting for the others; the iteration waits for the busiest worker.

Usage: python3 experiments/bench/scaling_model.py TASKS.jsonl results/meta_train_workers.json
"""

import json
import random
import statistics
import sys

tasks = [json.loads(l) for l in open(sys.argv[1]) if '"id"' in l]
bench = json.load(open(sys.argv[2]))
runs = {r["name"]: r for r in bench["runs"]}
one = runs["1core-threads"]
two = runs["2cores-2workers"]
decisions = one["env_steps"]
per_decision_secs = one["inner_train_secs_summed"] / decisions
reset_share = (one["env_secs_summed"] - one["inner_train_secs_summed"]) / one["env_secs_summed"]
cost = [t["cost"] / max(t["epochs"], 1) for t in tasks]
epochs = [max(t["epochs"], 1) for t in tasks]
scale = per_decision_secs / statistics.mean(cost)
step_secs = [c * scale for c in cost]
num_steps = 128
iterations = one["iterations"]
envs_bench = decisions // (num_steps * iterations)
update_per_env = one["update_secs"] / iterations / envs_bench  # PPO update per iteration per env

def simulate(workers, envs, scheme, iters=3, seed=0):
    rng = random.Random(seed)
    # Each env: current task, decisions left in its episode.
    state = []
    for _ in range(envs):
        k = rng.randrange(len(tasks))
        state.append([k, epochs[k]])
    owner = [e % workers for e in range(envs)]
    serial = 0.0
    wall = 0.0
    for _ in range(iters):
        if scheme == "lockstep":
            for _ in range(num_steps):
                load = [0.0] * workers
                for e in range(envs):
                    load[owner[e]] += step_secs[state[e][0]] * (1 + reset_share)
                serial += sum(load)
                wall += max(load)
                for e in range(envs):
                    state[e][1] -= 1
                    if state[e][1] == 0:
                        k = rng.randrange(len(tasks))
                        state[e] = [k, epochs[k]]
                        # least loaded worker by its envs' current step costs
                        wl = [0.0] * workers
                        for f in range(envs):
                            if f != e:
                                wl[owner[f]] += step_secs[state[f][0]]
                        owner[e] = min(range(workers), key=lambda w: wl[w])
        else:
            seg = [0.0] * envs
            for e in range(envs):
                for _ in range(num_steps):
                    seg[e] += step_secs[state[e][0]] * (1 + reset_share)
                    state[e][1] -= 1
                    if state[e][1] == 0:
                        k = rng.randrange(len(tasks))
                        state[e] = [k, epochs[k]]
            load = [0.0] * workers
            for e in sorted(range(envs), key=lambda e: -seg[e]):
                w = min(range(workers), key=lambda w: load[w])
                load[w] += seg[e]
            serial += sum(seg)
            wall += max(load)
        update = update_per_env * envs
        serial += update
        wall += update
    return serial / wall, wall / iters


out = {
    "model": "experiments/bench/scaling_model.py",
    "calibration": {
        "per_decision_secs_mean": per_decision_secs,
        "reset_share_of_env_time": reset_share,
        "ppo_update_secs_per_iteration_per_env": update_per_env,
    },
    "speedup": {},
}
for scheme in ("lockstep", "segments"):
    for w in (2, 8, 16, 64, 256):
        envs = max(w, 8)
        sp = [simulate(w, envs, scheme, seed=s)[0] for s in range(3)]
        out["speedup"][f"{scheme} W={w} E={envs}"] = round(statistics.mean(sp), 2)
print(json.dumps(out, indent=1))
