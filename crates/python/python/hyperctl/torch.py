"""``HyperctlLR``: a PyTorch learning-rate scheduler driven by a hyperctl policy.

    sched = HyperctlLR(optimizer, epochs=30)            # the shipped default policy
    for epoch in range(30):
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            sched.record_batch(loss)                    # the minibatch loss, before its update
        sched.step(validation_loss(model))              # decides the next epoch's lr and momentum

Every feature the policy reads is the one hyperctl's own trainer computes:

- minibatch loss: ``record_batch(loss)`` (the loss the step was computed from);
- global gradient L2 norm of each step: read from the parameters' ``.grad`` as the step used it
  (an optimizer step post-hook: after any clipping you apply; frameworks that compute gradients
  inside ``step(closure)``, as Lightning does, have them only then);
- update ratio ``‖w_after − w_before‖ / ‖w_before‖`` over the interval: ``w_before`` is copied at
  the interval's first ``optimizer.step()`` (this costs one copy of the parameters);
- validation loss: the argument of ``step(val_loss)``; learning rate, momentum and progress: the
  scheduler's own.

``step()`` without a validation loss (frameworks that step schedulers every batch) changes
nothing. ``state_dict()`` holds everything the decisions depend on (plain data); a run saved
after interval k and loaded in a fresh process continues with identical decisions, whether the
optimizer's state is loaded before or after the scheduler is built. ``guard=model`` keeps the
last good model and optimizer state in memory and restores it when an interval diverged or blew
up, then trains on at the reduced lr (as ``hyperctl train --rollback``; unlike hyperctl's trainer,
your DataLoader's order is not rewound).
"""

from __future__ import annotations

import copy
import math
from typing import List, Optional

import torch
from torch.optim.lr_scheduler import LRScheduler

from ._loop import Controller, Decision

__all__ = ["HyperctlLR", "optimizer_kind"]


def optimizer_kind(optimizer) -> str:
    """``"sgd"`` (groups carry ``momentum``) or ``"adam"`` (groups carry ``betas``)."""
    group = optimizer.param_groups[0]
    if "momentum" in group:
        return "sgd"
    if "betas" in group:
        return "adam"
    raise ValueError(
        f"HyperctlLR: {type(optimizer).__name__} has neither `momentum` nor `betas` in its param groups"
    )


def _trained_optimizer(policy: str) -> str:
    import json

    from . import _native

    config = json.loads(_native.policy_config(policy))
    # `training.optimizer` is "sgd" or "adamw" (hyperctl's trainer); policies from before AdamW
    # existed say nothing and were trained driving SGD with momentum. In PyTorch, Adam and AdamW
    # both carry `betas`: an AdamW-trained policy drives either.
    trained = config.get("optimizer", (config.get("training") or {}).get("optimizer")) or "sgd"
    return "adam" if trained in ("adam", "adamw") else str(trained)


class HyperctlLR(LRScheduler):
    """A ``torch.optim.lr_scheduler.LRScheduler`` whose lr and momentum come from a policy.

    Args:
        optimizer: the optimizer (SGD with momentum for the shipped policies).
        epochs: the run's budget in decision intervals (``step(val_loss)`` calls).
        policy: ``"default"`` (built in) or a policy folder.
        guard: a ``torch.nn.Module`` to guard (restore on divergence), or None.
        steps_per_epoch: minibatch steps per interval (only step-based schedules read it).
        initial_val_loss: the untrained model's validation loss (default: the first minibatch
            loss stands in, as in ``hyperctl serve``).
    """

    def __init__(
        self,
        optimizer,
        epochs: int,
        policy: str = "default",
        *,
        guard: Optional[torch.nn.Module] = None,
        steps_per_epoch: int = 1,
        initial_val_loss: Optional[float] = None,
        last_epoch: int = -1,
    ):
        kind = optimizer_kind(optimizer)
        trained = _trained_optimizer(policy)
        if kind != trained:
            raise ValueError(
                f"HyperctlLR: policy {policy!r} was trained driving {trained}, not {kind} "
                f"({type(optimizer).__name__}); its momentum actions would mean something else"
            )
        group = optimizer.param_groups[0]
        # The policy's "momentum" is SGD's momentum, or Adam's beta1 for a policy trained on Adam.
        start_momentum = group["momentum"] if kind == "sgd" else group["betas"][0]
        self.controller = Controller(
            epochs,
            group["lr"],
            start_momentum,
            policy,
            guard=guard is not None,
            steps_per_epoch=steps_per_epoch,
            initial_val_loss=initial_val_loss,
        )
        # Groups keep their lr ratios to the first group (e.g. a smaller lr for a backbone).
        ref = group["lr"] if group["lr"] > 0 else 1.0
        self._lr_ratios = [g["lr"] / ref for g in optimizer.param_groups]
        self._guard_model = guard
        self._kept = None
        self._keep_before_next_step = guard is not None
        self._w_before: Optional[List[torch.Tensor]] = None
        self._pending_norm: Optional[float] = None
        self._started = False
        self.last_decision: Decision = self.controller.current
        self._hooks = (
            optimizer.register_step_pre_hook(self._before_step),
            optimizer.register_step_post_hook(self._after_step),
        )
        super().__init__(optimizer, last_epoch)

    # -- what the policy reads -------------------------------------------------------------

    def _params(self):
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    @torch.no_grad()
    def _before_step(self, optimizer, args, kwargs) -> None:
        if self._keep_before_next_step:
            self._keep()
            self._keep_before_next_step = False
        if self._w_before is None:
            self._w_before = [p.detach().clone() for p in self._params()]

    @torch.no_grad()
    def _after_step(self, optimizer, args, kwargs) -> None:
        # After the step: frameworks that compute the gradients inside `step(closure)` (Lightning)
        # have them only now, and optimizers leave `.grad` as it was used.
        squares = [p.grad.detach().double().pow(2).sum() for p in self._params() if p.grad is not None]
        self._pending_norm = math.sqrt(float(sum(squares))) if squares else None

    def record_batch(self, loss) -> None:
        """Call after each ``optimizer.step()`` with that step's minibatch loss."""
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        self.controller.record(value, self._pending_norm)
        self._pending_norm = None

    @torch.no_grad()
    def _update_ratio(self) -> Optional[float]:
        if self._w_before is None:
            return None
        moved = sum(float((p.detach().double() - w.double()).pow(2).sum()) for p, w in zip(self._params(), self._w_before))
        size = sum(float(w.double().pow(2).sum()) for w in self._w_before)
        self._w_before = None
        return math.sqrt(moved) / math.sqrt(size) if size > 0 else None

    # -- the scheduler contract --------------------------------------------------------------

    def get_lr(self) -> List[float]:
        return [self.controller.current.lr * r for r in self._lr_ratios]

    def step(self, val_loss=None, epoch=None):  # noqa: D401 - LRScheduler's signature
        """At the end of an interval, ``step(val_loss)`` decides the next one. ``step()`` without
        a validation loss changes nothing (the first call, from the constructor, applies the
        policy's first decision)."""
        if epoch is not None:
            raise ValueError("HyperctlLR.step: `epoch` is not supported; pass the validation loss")
        if not self._started:
            self._started = True
            self._apply(self.controller.current)
            return None
        if val_loss is None:
            return None
        value = float(val_loss.detach()) if isinstance(val_loss, torch.Tensor) else float(val_loss)
        decision = self.controller.end_interval(value, self._update_ratio())
        self.last_epoch += 1
        if self._guard_model is not None:
            if decision.restore_epoch is not None:
                self._restore()
            elif decision.keep:
                self._keep()
        self._apply(decision)
        self.last_decision = decision
        for w in decision.warnings:
            import warnings

            warnings.warn(f"hyperctl: {w}", stacklevel=2)
        return decision

    def _apply(self, d: Decision) -> None:
        for group, ratio in zip(self.optimizer.param_groups, self._lr_ratios):
            group["lr"] = d.lr * ratio
            if "momentum" in group:
                group["momentum"] = d.momentum
            elif "betas" in group:
                # beta1 only: beta2 (the second-moment average) stays what the user set.
                group["betas"] = (d.momentum, group["betas"][1])
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    # -- the guard ------------------------------------------------------------------------

    def _keep(self) -> None:
        self._kept = (
            copy.deepcopy(self._guard_model.state_dict()),
            copy.deepcopy(self.optimizer.state_dict()),
        )

    def _restore(self) -> None:
        model_state, optimizer_state = self._kept
        self._guard_model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optimizer_state)

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "hyperctl": self.controller.state_dict(),
            "last_epoch": self.last_epoch,
            "lr_ratios": list(self._lr_ratios),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.controller.load_state_dict(state_dict["hyperctl"])
        self.last_epoch = state_dict["last_epoch"]
        self._lr_ratios = list(state_dict["lr_ratios"])
        self.last_decision = self.controller.current
        self._w_before = None
        self._pending_norm = None
        # The guard's restore point is the state training continues from (loaded by then).
        self._keep_before_next_step = self._guard_model is not None
        self._apply(self.controller.current)
