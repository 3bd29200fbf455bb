"""The framework-free half of a scheduler: a policy session plus what its decisions depend on.

``Controller`` keeps every interval's report, so its ``state_dict()`` is plain data (JSON-able)
and ``load_state_dict()`` rebuilds the session by replaying the reports: the policy and the
guard are deterministic, so the rebuilt session decides exactly what the original would have.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import List, Optional

from . import _native

STATE_VERSION = 1


@dataclass
class Decision:
    """The answer to one interval (see ``LiveDecision`` in the Rust docs)."""

    lr: float
    momentum: float
    #: With the guard: the interval just reported diverged or blew up; restore the state saved
    #: after this interval (0: the initial state), then train on at ``lr``.
    restore_epoch: Optional[int] = None
    #: With the guard: save this state (model and optimizer); it is the one to go back to.
    keep: bool = False
    #: The run diverged and the guard could not (or was not asked to) undo it: stop training.
    diverged: bool = False
    #: The budget is spent (or the run diverged): no further interval is expected.
    done: bool = False
    warnings: List[str] = field(default_factory=list)


def _finite_or_none(v: Optional[float]) -> Optional[float]:
    return v if v is not None and math.isfinite(v) else None


class Controller:
    """One training run under a policy, without any framework.

    Call ``record(loss, grad_norm)`` after every minibatch step, then ``end_interval(val_loss,
    update_ratio)`` at the end of each decision interval; apply the returned ``Decision``.
    """

    def __init__(
        self,
        epochs: int,
        lr: float,
        momentum: float,
        policy: str = "default",
        *,
        guard: bool = False,
        steps_per_epoch: int = 1,
        initial_val_loss: Optional[float] = None,
    ):
        self._open = dict(
            epochs=int(epochs),
            lr=float(lr),
            momentum=float(momentum),
            policy=str(policy),
            guard=bool(guard),
            steps_per_epoch=int(steps_per_epoch),
            initial_val_loss=None if initial_val_loss is None else float(initial_val_loss),
        )
        self._reports: List[dict] = []
        self._start()

    def _start(self) -> None:
        o = self._open
        self._session = _native.Session(
            o["epochs"],
            o["lr"],
            o["momentum"],
            policy=o["policy"],
            steps_per_epoch=o["steps_per_epoch"],
            guard=o["guard"],
            initial_val_loss=o["initial_val_loss"],
        )
        lr, momentum = self._session.first
        self.current = Decision(lr=lr, momentum=momentum)
        self._losses: List[float] = []
        self._grad_norms: List[float] = []

    @property
    def epochs_done(self) -> int:
        return self._session.epochs_done

    @property
    def rollbacks(self) -> int:
        return self._session.rollbacks

    def record(self, loss: float, grad_norm: Optional[float] = None) -> None:
        """One minibatch: its loss (before the update) and its global gradient L2 norm."""
        self._losses.append(float(loss))
        if grad_norm is not None:
            self._grad_norms.append(float(grad_norm))

    def end_interval(self, val_loss: float, update_ratio: Optional[float] = None) -> Decision:
        """Ends the interval: observes it and returns the next interval's decision."""
        if not self._losses:
            raise ValueError(
                "end_interval: no minibatch recorded in this interval (call record(loss) after each step)"
            )
        report = dict(
            train_losses=self._losses,
            val_loss=float(val_loss),
            grad_norms=self._grad_norms if len(self._grad_norms) == len(self._losses) else [],
            update_ratio=None if update_ratio is None else float(update_ratio),
        )
        decision = self._observe(report)
        self._reports.append(report)
        self._losses, self._grad_norms = [], []
        return decision

    def _observe(self, report: dict) -> Decision:
        d = self._session.observe(
            report["train_losses"],
            report["val_loss"],
            report["grad_norms"],
            report["update_ratio"],
        )
        self.current = Decision(**d)
        return self.current

    def state_dict(self) -> dict:
        """Everything the decisions depend on, as plain data (JSON-serializable: non-finite
        losses are written as None)."""
        clean = [
            dict(
                r,
                train_losses=[_finite_or_none(v) for v in r["train_losses"]],
                val_loss=_finite_or_none(r["val_loss"]),
            )
            for r in self._reports
        ]
        return {
            "version": STATE_VERSION,
            "open": dict(self._open),
            "reports": clean,
            "pending": {"losses": list(self._losses), "grad_norms": list(self._grad_norms)},
        }

    def load_state_dict(self, state: dict) -> None:
        """Rebuilds the session from ``state_dict()``'s data by replaying its reports."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"hyperctl state version {state.get('version')!r}; this package reads {STATE_VERSION}"
            )
        self._open = dict(state["open"])
        self._reports = []
        self._start()
        nan = float("nan")
        for r in state["reports"]:
            report = dict(
                r,
                train_losses=[nan if v is None else v for v in r["train_losses"]],
                val_loss=nan if r["val_loss"] is None else r["val_loss"],
            )
            self._observe(report)
            self._reports.append(report)
        self._losses = list(state["pending"]["losses"])
        self._grad_norms = list(state["pending"]["grad_norms"])

    def to_json(self) -> str:
        return json.dumps(self.state_dict())
