"""Decision parity: the package decides exactly what the Rust library decides (the fixture is
checked against the library by `cargo test -p hyperctl-decide --test decision_fixture`)."""

import json
import math
from pathlib import Path

import pytest

import hyperctl

FIXTURE = Path(__file__).parent / "fixtures" / "decisions.json"
ROOT = Path(__file__).resolve().parents[3]


def runs():
    return json.loads(FIXTURE.read_text())


def nan_for_none(values):
    return [math.nan if v is None else v for v in values]


@pytest.mark.parametrize("run", runs(), ids=lambda r: r["name"])
def test_native_session_makes_the_libraries_decisions_bit_for_bit(run):
    s = hyperctl.Session(
        run["epochs"],
        run["lr"],
        run["momentum"],
        steps_per_epoch=run["steps_per_epoch"],
        guard=run["guard"],
    )
    assert list(s.first) == run["first"]
    for e in run["epochs_reported"]:
        d = s.observe(
            nan_for_none(e["train_losses"]),
            math.nan if e["val_loss"] is None else e["val_loss"],
            e["grad_norms"],
            e["update_ratio"],
        )
        for key in ["lr", "momentum", "restore_epoch", "keep", "diverged", "done"]:
            assert d[key] == e[key], (run["name"], key)


@pytest.mark.parametrize("run", runs(), ids=lambda r: r["name"])
def test_controller_makes_the_same_decisions_and_replays_them_from_its_state(run):
    c = hyperctl.Controller(
        run["epochs"], run["lr"], run["momentum"], guard=run["guard"], steps_per_epoch=run["steps_per_epoch"]
    )
    halfway = len(run["epochs_reported"]) // 2
    for i, e in enumerate(run["epochs_reported"]):
        if i == halfway:
            # A checkpoint, restored into a fresh controller (through JSON, as a file would).
            state = json.loads(c.to_json())
            c = hyperctl.Controller(1, 0.1, 0.0)
            c.load_state_dict(state)
        for loss, g in zip(nan_for_none(e["train_losses"]), e["grad_norms"] or [None] * len(e["train_losses"])):
            c.record(loss, g)
        d = c.end_interval(math.nan if e["val_loss"] is None else e["val_loss"], e["update_ratio"])
        assert (d.lr, d.momentum, d.restore_epoch, d.keep, d.diverged, d.done) == (
            e["lr"], e["momentum"], e["restore_epoch"], e["keep"], e["diverged"], e["done"]
        )


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="epochs"):
        hyperctl.Session(0, 0.1, 0.9)
    with pytest.raises(ValueError, match="lr"):
        hyperctl.Session(5, -1.0, 0.9)
    with pytest.raises(ValueError, match="is not a folder"):
        hyperctl.Session(5, 0.1, 0.9, policy="/no/such/policy")
    s = hyperctl.Session(5, 0.1, 0.9)
    with pytest.raises(ValueError, match="train_losses"):
        s.observe([], 1.0)
    c = hyperctl.Controller(5, 0.1, 0.9)
    with pytest.raises(ValueError, match="no minibatch recorded"):
        c.end_interval(1.0)
    with pytest.raises(ValueError, match="state version"):
        c.load_state_dict({"version": 99})


def test_a_policy_folder_loads_like_the_built_in_default():
    folder = ROOT / "policies" / "default"
    a = hyperctl.Session(8, 0.01, 0.9, policy=str(folder))
    b = hyperctl.Session(8, 0.01, 0.9)
    assert a.first == b.first
    cfg = json.loads(hyperctl.policy_config("default"))
    assert cfg["featurizer"]["version"] in hyperctl.FEATURIZER_VERSIONS


def test_missing_features_are_warned_once():
    s = hyperctl.Session(5, 0.01, 0.9)
    first = s.observe([1.0, 0.9], 0.95)
    assert any("grad_norms" in w for w in first["warnings"])
    assert any("update_ratio" in w for w in first["warnings"])
    assert s.observe([0.9, 0.8], 0.85)["warnings"] == []
