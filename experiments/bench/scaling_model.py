"""Expected meta-training speed-up at W workers, by simulation from measured per-step costs
(issue 18, item 4). Not a measurement: a model calibrated on one.

Inputs:
- the meta-train tasks' cost estimates (`hyperctl tasks list envs/default.toml --split meta-train
  --json`: minibatch steps x parameters per episode; one decision per epoch), scaled so their mean
  per decision equals the measured mean inner-training time per decision of the 1-core run
  (results/meta_train_workers.json);
- the measured PPO update time per iteration per env (it grows with the batch and runs on the
  learner alone). Messages and the policy forward (~1.5 ms per step measured) are left out.

Three rollout schemes, all with W workers and E = W envs (one env per worker: the most a worker
count can use) and 128 decisions per env per iteration:
- lockstep (`rollout = "lockstep"`, the default): every step waits for the busiest worker; an
  env goes to the least loaded worker at each episode start;
- segments, by env: each worker runs its envs' 128 decisions with the iteration's policy
  without waiting for the others (envs placed longest first with hindsight); the iteration waits
  for the busiest worker;
- episodes: segments scheduled by episode, as `meta-train --workers` does since 6e339d5: every
  episode of the iteration is a piece (all known in advance), an env's first piece stays on the
  worker holding it, the others go to the first idle worker, costliest first (the "last" piece of
  an env decides where it is held next iteration). Early ends (divergence) are left out.

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
        elif scheme == "episodes":
            # What `meta-train --workers` does with `rollout = "segments"` (issue 18): every
            # episode of the iteration is a piece of its own (known in advance); an env's first
            # piece stays on the worker holding it, the others go to whichever worker is idle,
            # the worker's own pieces first, then the costliest.
            pinned = [[] for _ in range(workers)]
            free = []
            for e in range(envs):
                left, first = num_steps, True
                while left > 0:
                    k, rem = state[e]
                    n = min(rem, left)
                    c = step_secs[k] * n + (0.0 if first else step_secs[k] * reset_share * epochs[k])
                    (pinned[owner[e]] if first else free).append((c, e))
                    first = False
                    left -= n
                    state[e][1] -= n
                    if state[e][1] == 0:
                        k = rng.randrange(len(tasks))
                        state[e] = [k, epochs[k]]
            free.sort(reverse=True)
            for p in pinned:
                p.sort(reverse=True)
            clock = [0.0] * workers
            last = {}
            while free or any(pinned):
                w = min(range(workers), key=lambda v: clock[v])
                if pinned[w]:
                    c, e = pinned[w].pop(0)
                elif free:
                    c, e = free.pop(0)
                else:
                    clock[w] = min(c for c in clock if c > clock[w]) if any(c > clock[w] for c in clock) else clock[w] + 1e9
                    continue
                clock[w] += c
                serial += c
                last[e] = w
            for e, w in last.items():
                owner[e] = w
            wall += max(c for c in clock if c < 1e8)
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
for scheme in ("lockstep", "segments", "episodes"):
    for w in (2, 8, 16, 64, 256):
        envs = max(w, 8)
        sp = [simulate(w, envs, scheme, seed=s)[0] for s in range(3)]
        out["speedup"][f"{scheme} W={w} E={envs}"] = round(statistics.mean(sp), 2)
print(json.dumps(out, indent=1))
