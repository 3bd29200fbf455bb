"""``HyperctlCallback`` for the Hugging Face ``Trainer``.

    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    sched = HyperctlLR(opt, epochs=int(args.num_train_epochs))
    trainer = Trainer(model, args, ..., optimizers=(opt, sched), callbacks=[HyperctlCallback(sched)])

with ``eval_strategy="epoch"`` (or ``"steps"``: one decision per evaluation). The Trainer steps the
scheduler after every optimizer step without a loss, which changes nothing; the callback records
each optimizer step's training loss (the model's ``outputs.loss``, averaged over gradient
accumulation) and decides at each evaluation from ``eval_loss``.
"""

from __future__ import annotations

from transformers import TrainerCallback

from .torch import HyperctlLR

__all__ = ["HyperctlCallback"]


class HyperctlCallback(TrainerCallback):
    def __init__(self, scheduler: HyperctlLR, monitor: str = "eval_loss"):
        self.scheduler = scheduler
        self.monitor = monitor
        self.decisions = []
        self._losses = []
        self._hook = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        def capture(module, inputs, outputs):
            loss = getattr(outputs, "loss", None)
            if loss is None and isinstance(outputs, dict):
                loss = outputs.get("loss")
            if module.training and loss is not None:
                self._losses.append(float(loss.detach()))

        if self._hook is None:
            self._hook = model.register_forward_hook(capture)

    def on_step_end(self, args, state, control, **kwargs):
        if self._losses:
            self.scheduler.record_batch(sum(self._losses) / len(self._losses))
            self._losses = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or self.monitor not in metrics:
            raise KeyError(f"HyperctlCallback: evaluation reported no `{self.monitor}`")
        decision = self.scheduler.step(metrics[self.monitor])
        if decision is not None:
            self.decisions.append(decision)
            if decision.done:
                control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
