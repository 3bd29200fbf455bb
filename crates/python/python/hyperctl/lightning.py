"""``HyperctlCallback`` for PyTorch Lightning: the policy sets lr and momentum every epoch.

    trainer = lightning.Trainer(max_epochs=30, callbacks=[HyperctlCallback()])

The module logs its validation loss as ``val_loss`` (``self.log("val_loss", loss)`` in
``validation_step``; another name with ``monitor=``) and its ``training_step`` returns the loss
(or a dict with ``loss``). The callback wraps the first optimizer in a ``HyperctlLR`` when
training starts (``epochs`` defaults to the trainer's ``max_epochs``), records each optimizer
step's loss, and decides at the end of each validation epoch (the sanity check is skipped).
Do not give the optimizer another lr scheduler: it would overwrite the policy's lr.
``guard=True`` guards the LightningModule (restores model and optimizer state on divergence).
"""

from __future__ import annotations

from typing import Optional

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    import pytorch_lightning as pl

from .torch import HyperctlLR

__all__ = ["HyperctlCallback"]


class HyperctlCallback(pl.Callback):
    def __init__(
        self,
        policy: str = "default",
        *,
        epochs: Optional[int] = None,
        monitor: str = "val_loss",
        guard: bool = False,
    ):
        self.policy = policy
        self.epochs = epochs
        self.monitor = monitor
        self.guard = guard
        self.scheduler: Optional[HyperctlLR] = None
        self.decisions = []

    def on_train_start(self, trainer, pl_module):
        if self.scheduler is not None:
            return  # resumed: load_state_dict built it
        epochs = self.epochs or trainer.max_epochs
        if not epochs or epochs < 1:
            raise ValueError("HyperctlCallback: give `epochs=` or a Trainer with max_epochs")
        self.scheduler = HyperctlLR(
            trainer.optimizers[0],
            epochs,
            self.policy,
            guard=pl_module if self.guard else None,
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and self.scheduler is not None:
            self.scheduler.record_batch(loss)

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or self.scheduler is None:
            return
        if self.monitor not in trainer.callback_metrics:
            raise KeyError(
                f"HyperctlCallback: the module logs no `{self.monitor}` (log the validation loss, or pass monitor=)"
            )
        decision = self.scheduler.step(trainer.callback_metrics[self.monitor])
        if decision is not None:
            self.decisions.append(decision)
            if decision.done:
                trainer.should_stop = True

    def state_dict(self):
        return {} if self.scheduler is None else {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state_dict):
        self._pending_state = state_dict.get("scheduler")

    def on_fit_start(self, trainer, pl_module):
        pending = getattr(self, "_pending_state", None)
        if pending is not None and self.scheduler is None and trainer.optimizers:
            self.scheduler = HyperctlLR(
                trainer.optimizers[0],
                pending["hyperctl"]["open"]["epochs"],
                self.policy,
                guard=pl_module if self.guard else None,
            )
            self.scheduler.load_state_dict(pending)
            self._pending_state = None
