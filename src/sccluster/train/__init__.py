"""The training loop shared by the deep models (torch only; never imports anndata)."""

from ._checkpoint import Checkpointer, checkpoint_files
from ._loop import OptimizerSpec, Phase, Trainer, Validator
from ._schedule import LR_SCHEDULES, Schedule, phase_lr, set_lr

__all__ = [
    "LR_SCHEDULES",
    "Checkpointer",
    "checkpoint_files",
    "OptimizerSpec",
    "Phase",
    "Schedule",
    "Trainer",
    "Validator",
    "phase_lr",
    "set_lr",
]
