"""Early stopping on a validation loss, keeping the best weights (no labels involved)."""

from __future__ import annotations

import math

import torch
from torch import nn


class EarlyStopping:
    """Track a validation loss, keep a copy of the best weights and say when to stop.

    Call :meth:`update` after each evaluation. It returns ``True`` once ``patience`` evaluations in
    a row have not lowered the best loss. :meth:`restore` then loads the weights of the best
    evaluation back into the network (scvi-tools and Keras call this *restoring the best weights*).

    Parameters
    ----------
    net
        The network being trained.
    patience
        Evaluations without a new best loss before training should stop.
    """

    def __init__(self, net: nn.Module, patience: int) -> None:
        self.net = net
        self.patience = int(patience)
        self.best_loss = math.inf
        self.best_step: int | None = None
        self.stale = 0
        self._best_state: dict[str, torch.Tensor] | None = None

    def update(self, loss: float, step: int) -> bool:
        """Record the validation ``loss`` after ``step``; return whether training should stop."""
        if loss < self.best_loss:
            self.best_loss, self.best_step, self.stale = float(loss), int(step), 0
            self._best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        else:
            self.stale += 1
        return self.stale >= self.patience

    def restore(self) -> None:
        """Load the weights of the best evaluation (no-op before the first :meth:`update`)."""
        if self._best_state is not None:
            self.net.load_state_dict(self._best_state)

    def state_dict(self) -> dict:
        """The best loss and step, the count of evaluations since, and the best weights (for checkpoints)."""
        return {
            "best_loss": self.best_loss,
            "best_step": self.best_step,
            "stale": self.stale,
            "best_state": self._best_state,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`."""
        self.best_loss = float(state["best_loss"])
        self.best_step = state["best_step"]
        self.stale = int(state["stale"])
        self._best_state = state["best_state"]
