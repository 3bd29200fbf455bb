"""hyperctl: learned, reactive learning-rate and momentum control for your own training loop.

The decisions are made in-process by hyperctl's Rust decision path (the same featurizer, action
mapping, bounds, divergence rule and guard as ``hyperctl train``, the Rust library and
``hyperctl serve``), compiled into ``hyperctl._native``.

- ``hyperctl.torch.HyperctlLR``: a ``torch.optim.lr_scheduler.LRScheduler`` driven by a policy.
- ``hyperctl.Controller``: the same loop without torch, for any framework: feed it each
  interval's minibatch losses, gradient norms, update ratio and validation loss.
"""

from ._native import FEATURIZER_VERSION, FEATURIZER_VERSIONS, Session, policy_config
from ._loop import Controller, Decision

__all__ = ["Controller", "Decision", "Session", "policy_config", "FEATURIZER_VERSION", "FEATURIZER_VERSIONS"]
