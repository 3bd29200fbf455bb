"""A short Stable-Baselines3 PPO run on hyperctl's Gymnasium env (issue 16, item 3): proof that a
DACBench-style user can train their own agent on our tasks, not a policy worth shipping.

    MATURIN_PEP517_ARGS="--features gym" pip install ./crates/python
    pip install stable-baselines3
    python experiments/gym-sb3/run.py --out experiments/gym-sb3/results

The agent trains on one generated task and is evaluated (deterministic actions) on fresh seeds of
it, beside the "keep the start" action (0, 0) and a random agent.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from stable_baselines3 import PPO

from hyperctl.gym import make


def evaluate(env, act, seeds):
    returns = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(act(obs))
            total += r
            done = terminated or truncated
        returns.append(total)
    return returns


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--task", default="generated#gm-train-000")
    ap.add_argument("--timesteps", type=int, default=4096)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = make(args.task)
    started = time.time()
    model = PPO("MlpPolicy", env, n_steps=256, batch_size=64, seed=0, verbose=0, device="cpu")
    model.learn(total_timesteps=args.timesteps)
    train_secs = time.time() - started
    seeds = list(range(1000, 1010))
    rng = np.random.default_rng(0)
    results = {
        "task": args.task,
        "timesteps": args.timesteps,
        "train_secs": train_secs,
        "eval_seeds": seeds,
        "ppo": evaluate(env, lambda o: model.predict(o, deterministic=True)[0], seeds),
        "keep_start": evaluate(env, lambda o: np.zeros(2, dtype=np.float32), seeds),
        "random": evaluate(env, lambda o: rng.uniform(-1, 1, 2).astype(np.float32), seeds),
    }
    summary = {k: statistics.fmean(results[k]) for k in ["ppo", "keep_start", "random"]}
    results["mean_return"] = summary
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({"train_secs": round(train_secs, 1), "mean_return": summary}))


if __name__ == "__main__":
    main()
