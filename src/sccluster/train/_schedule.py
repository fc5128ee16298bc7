"""Learning-rate schedules of the training loop."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

#: A constant rate, or cosine annealing within each phase.
Schedule = Literal["constant", "cosine"]
#: Values of :data:`Schedule` (the models' ``lr_schedule``).
LR_SCHEDULES: tuple[str, ...] = get_args(Schedule)


def phase_lr(lr: float, step: int, n_steps: int) -> float:
    """Learning rate of step ``step`` (0-based) of a phase of ``n_steps`` under cosine annealing.

    ``lr`` at the first step, falling as ``(1 + cos(pi * step / n_steps)) / 2`` to ``lr / 2`` half way
    and to about ``lr * (pi / n_steps)^2 / 4`` at the last step; each phase (pretraining, clustering)
    starts again from ``lr``.
    """
    return 0.5 * lr * (1.0 + float(np.cos(np.pi * step / n_steps)))


def set_lr(optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group of ``optimizer``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
