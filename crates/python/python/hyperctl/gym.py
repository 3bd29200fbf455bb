"""A Gymnasium environment over hyperctl's Rust ``ScheduleEnv``: one task's training run, one
decision interval per step (observation: the featurizer's scale-free statistics; action: two
values in [-1, 1] that the ONE action mapping turns into the next lr and momentum; reward: the
interval's progress ``ln V_{t-1} - ln V_t`` on validation loss; divergence terminates with the
crash penalty).

    env = hyperctl.gym.make("generated#gm-val-000")            # one task
    env = hyperctl.gym.make("generated", split="meta-train")   # a new task at every reset
    obs, info = env.reset(seed=0)

Needs the package built with the ``gym`` feature (it compiles hyperctl's trainer, on burn):
``MATURIN_PEP517_ARGS="--features gym" pip install ./crates/python``. Train your own agents on
hyperctl's tasks with any Gymnasium library (Stable-Baselines3, DACBench-style setups).
"""

from __future__ import annotations

from typing import Optional

import gymnasium
import numpy as np

from . import _native

__all__ = ["HyperctlEnv", "make"]


class HyperctlEnv(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(
        self,
        task: str,
        *,
        split: Optional[str] = None,
        data_dir: Optional[str] = None,
        env_config: Optional[str] = None,
    ):
        if not getattr(_native, "HAS_GYM", False):
            raise RuntimeError(
                "hyperctl.gym needs the package built with the gym feature: "
                'MATURIN_PEP517_ARGS="--features gym" pip install ./crates/python'
            )
        self._env = _native.ScheduleEnv(task, split=split, data_dir=data_dir, env_config=env_config)
        low, high = self._env.observation_bounds
        self.observation_space = gymnasium.spaces.Box(
            np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32), dtype=np.float32
        )
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.task_id = self._env.task_id

    def reset(self, *, seed: Optional[int] = None, options=None):
        super().reset(seed=seed)
        if seed is None:
            # Gymnasium's own stream decides, so a seeded first reset makes the whole run repeatable.
            seed = int(self.np_random.integers(0, 2**31 - 1))
        obs, info = self._env.reset(seed)
        return np.asarray(obs, dtype=np.float32), _info(info)

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(2), -1.0, 1.0)
        obs, reward, terminated, truncated, info = self._env.step([float(a) for a in action])
        return np.asarray(obs, dtype=np.float32), float(reward), bool(terminated), bool(truncated), _info(info)


def _info(pairs) -> dict:
    # Wall-clock timings are left out: an env's info must be a function of seed and actions.
    return {k: v for k, v in pairs if not k.endswith("_secs")}


def make(task: str, **kwargs) -> HyperctlEnv:
    """``make("COLLECTION#TASK_ID")``, or ``make("COLLECTION", split="meta-train")`` to draw the
    next of the split's tasks at every reset; ``data_dir=``, ``env_config=`` as for the CLI."""
    return HyperctlEnv(task, **kwargs)
