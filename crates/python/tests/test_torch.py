"""HyperctlLR with real PyTorch (skipped where torch is not installed)."""

import math
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

import hyperctl  # noqa: E402
from hyperctl.torch import HyperctlLR  # noqa: E402

COMMON = textwrap.dedent(
    """
    import math, torch
    from hyperctl.torch import HyperctlLR

    def setup(seed=0):
        torch.manual_seed(seed)
        x = torch.randn(256, 8)
        y = (x @ torch.randn(8, 1)).tanh() + 0.05 * torch.randn(256, 1)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.0)
        return x, y, model, opt

    def epoch(x, y, model, opt, sched, poison=False):
        for i in range(0, 224, 32):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[i:i + 32]), y[i:i + 32])
            loss.backward()
            opt.step()
            sched.record_batch(loss)
        if poison:
            with torch.no_grad():
                model[0].weight.fill_(float("nan"))
        with torch.no_grad():
            val = torch.nn.functional.mse_loss(model(x[224:]), y[224:])
        return sched.step(val)
    """
)
exec(COMMON)  # noqa: S102 - the same helpers in this process and in the fresh ones


def test_it_is_a_real_lr_scheduler_and_step_without_a_loss_changes_nothing():
    x, y, model, opt = setup()
    sched = HyperctlLR(opt, epochs=6)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    first = hyperctl.Session(6, 0.003, 0.0).first
    assert sched.get_last_lr() == [first[0]]
    assert opt.param_groups[0]["momentum"] == first[1]
    sched.step()  # a framework stepping every batch
    assert sched.get_last_lr() == [first[0]]
    d = epoch(x, y, model, opt, sched)
    assert sched.get_last_lr() == [d.lr] and opt.param_groups[0]["lr"] == d.lr
    assert opt.param_groups[0]["momentum"] == d.momentum


def test_features_are_measured_as_the_trainer_defines_them():
    # The same loop, measured by hand, fed to a bare session: identical decisions.
    x, y, model, opt = setup()
    sched = HyperctlLR(opt, epochs=5)
    session = hyperctl.Session(5, 0.003, 0.0)
    for _ in range(5):
        w0 = [p.detach().clone() for p in model.parameters()]
        losses, norms = [], []
        for i in range(0, 224, 32):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[i:i + 32]), y[i:i + 32])
            loss.backward()
            norms.append(math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters())))
            opt.step()
            sched.record_batch(loss)
            losses.append(float(loss.detach()))
        moved = sum(float((p.detach().double() - w.double()).pow(2).sum()) for p, w in zip(model.parameters(), w0))
        size = sum(float(w.double().pow(2).sum()) for w in w0)
        with torch.no_grad():
            val = float(torch.nn.functional.mse_loss(model(x[224:]), y[224:]))
        d = sched.step(val)
        ref = session.observe(losses, val, norms, math.sqrt(moved) / math.sqrt(size))
        assert (d.lr, d.momentum) == (ref["lr"], ref["momentum"])
        assert ref["warnings"] == []


@pytest.mark.parametrize("order", ["scheduler-first", "optimizer-first"])
def test_a_checkpoint_continues_with_identical_decisions_in_a_fresh_process(tmp_path, order):
    x, y, model, opt = setup()
    sched = HyperctlLR(opt, epochs=8)
    for _ in range(3):
        epoch(x, y, model, opt, sched)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, ckpt)
    expected = [(d.lr, d.momentum) for d in (epoch(x, y, model, opt, sched) for _ in range(3))]
    script = COMMON + textwrap.dedent(
        f"""
        x, y, model, opt = setup()
        state = torch.load({str(ckpt)!r})
        model.load_state_dict(state["model"])
        if {order!r} == "scheduler-first":
            sched = HyperctlLR(opt, epochs=8)
            opt.load_state_dict(state["opt"])
        else:
            opt.load_state_dict(state["opt"])
            sched = HyperctlLR(opt, epochs=8)
        sched.load_state_dict(state["sched"])
        out = [epoch(x, y, model, opt, sched) for _ in range(3)]
        print(repr([(d.lr, d.momentum) for d in out]))
        """
    )
    got = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert eval(got.stdout.strip().splitlines()[-1]) == expected  # noqa: S307 - our own output


def test_the_guard_restores_the_last_good_state_and_lowers_the_lr():
    x, y, model, opt = setup()
    sched = HyperctlLR(opt, epochs=8, guard=model)
    for _ in range(2):
        d = epoch(x, y, model, opt, sched)
        assert d.keep
    good = {k: v.clone() for k, v in model.state_dict().items()}
    lr_before = opt.param_groups[0]["lr"]
    d = epoch(x, y, model, opt, sched, poison=True)  # the model is wrecked: NaN weights
    assert d.restore_epoch == 2 and not d.diverged
    for k, v in model.state_dict().items():
        assert torch.equal(v, good[k]), k
    assert opt.param_groups[0]["lr"] == d.lr and d.lr <= lr_before
    assert sched.controller.rollbacks == 1
    d = epoch(x, y, model, opt, sched)
    assert math.isfinite(float(model[0].weight.detach().sum())) and d.restore_epoch is None


def test_without_the_guard_a_diverged_interval_ends_the_run():
    x, y, model, opt = setup()
    sched = HyperctlLR(opt, epochs=8)
    epoch(x, y, model, opt, sched)
    d = epoch(x, y, model, opt, sched, poison=True)
    assert d.diverged and d.done


def test_for_a_policy_trained_on_adam_the_momentum_is_beta1_and_beta2_is_kept(monkeypatch):
    import hyperctl.torch as ht

    monkeypatch.setattr(ht, "_trained_optimizer", lambda policy: "adam")
    x, y, model, _ = setup()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.95))
    sched = HyperctlLR(opt, epochs=4)
    assert sched.controller._open["momentum"] == 0.8
    d = epoch(x, y, model, opt, sched)
    assert opt.param_groups[0]["betas"] == (d.momentum, 0.95)
    assert opt.param_groups[0]["lr"] == d.lr


def test_an_optimizer_the_policy_was_not_trained_with_is_refused():
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="trained driving sgd, not adam"):
        HyperctlLR(torch.optim.AdamW(model.parameters(), lr=1e-3), epochs=5)
