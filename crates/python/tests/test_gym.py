"""hyperctl.gym (needs the package built with the gym feature, and gymnasium)."""

import pytest

import os

# run_tests.sh sets this for its gym build: there a missing gymnasium or gym feature is a failure,
# not a skip.
REQUIRED = os.environ.get("HYPERCTL_REQUIRE_GYM") == "1"

if REQUIRED:
    import gymnasium
else:
    gymnasium = pytest.importorskip("gymnasium")

import hyperctl  # noqa: E402
from hyperctl import _native  # noqa: E402

if REQUIRED:
    assert getattr(_native, "HAS_GYM", False), "HYPERCTL_REQUIRE_GYM=1 but the package was built without the gym feature"

pytestmark = pytest.mark.skipif(
    not getattr(_native, "HAS_GYM", False),
    reason='built without the gym feature (MATURIN_PEP517_ARGS="--features gym" pip install ./crates/python)',
)

TASK = "generated#sp-test-000"


def test_the_env_passes_gymnasiums_checker():
    from gymnasium.utils.env_checker import check_env

    from hyperctl.gym import make

    check_env(make(TASK), skip_render_check=True)


def test_an_episode_is_a_training_run_and_repeats_from_its_seed():
    from hyperctl.gym import make

    def episode():
        env = make(TASK)
        obs, info = env.reset(seed=3)
        assert obs.shape == env.observation_space.shape
        rewards, done = [], False
        while not done:
            obs, r, terminated, truncated, info = env.step([0.0, 0.0])
            rewards.append(r)
            done = terminated or truncated
        return rewards

    a, b = episode(), episode()
    assert a == b and len(a) >= 1


def test_a_collection_split_cycles_through_its_tasks():
    from gymnasium.utils.env_checker import check_env

    from hyperctl.gym import make

    env = make("generated", split="meta-val")
    assert env.task_id == "generated:meta-val"
    check_env(env, skip_render_check=True)
    budgets = set()
    for seed in range(6):
        env.reset(seed=seed)
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step([0.0, 0.0])
            steps, done = steps + 1, terminated or truncated
        budgets.add(steps)
    assert len(budgets) > 1, "different tasks (budgets) at different resets"


def test_bad_input_is_a_clear_error():
    from hyperctl.gym import make

    with pytest.raises(ValueError, match="COLLECTION#TASK_ID"):
        make("generated")
    with pytest.raises(ValueError, match="no task"):
        make("generated#nope")
    with pytest.raises(ValueError, match="no task in split"):
        make("generated", split="nope")
    env = make(TASK)
    with pytest.raises(ValueError, match="call reset"):
        env._env.step([0.0, 0.0])
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env._env.step([float("nan"), 0.0])
    assert hyperctl.FEATURIZER_VERSION >= 1
