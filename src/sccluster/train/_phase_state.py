"""What a phase changes besides the weights, its round trip through a checkpoint, and the data-parallel step."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
from torch import nn

from sccluster.nn import EarlyStopping, LossOutput, TargetSnapshot

from ._checkpoint import Checkpointer

if TYPE_CHECKING:
    from ._loop import Phase

Batch = dict[str, Any]


class Trainable(Protocol):
    """The methods the loop calls on its module besides those of ``nn.Module`` (see :mod:`sccluster.train._loop`)."""

    def loss(self, batch: Batch, outputs: Any) -> LossOutput: ...

    def target_log_q(self, batch: Batch) -> torch.Tensor: ...


class ForwardAndLoss(nn.Module):
    """The forward pass and the loss as one module's forward (what the data-parallel wrapper needs)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses = cast(Trainable, self.module).loss(batch, self.module(batch))
        return losses.total, dict(losses.terms)


class PhaseState:
    """What a phase changes besides the module's weights, and its round trip through a checkpoint."""

    def __init__(
        self,
        phase: Phase,
        optimizer: torch.optim.Optimizer,
        stopper: EarlyStopping | None,
        snapshot: TargetSnapshot | None,
    ) -> None:
        self.phase = phase
        self.optimizer = optimizer
        self.stopper = stopper
        self.snapshot = snapshot
        self.rows: list[dict[str, Any]] = []
        self.window: list[dict[str, torch.Tensor]] = []

    def to_dict(self, module: nn.Module, step: int, *, complete: bool) -> dict[str, Any]:
        """The phase's state after ``step`` steps (``complete``: the phase has ended)."""
        out: dict[str, Any] = {
            "phase": self.phase.name,
            "step": step,
            "complete": complete,
            "module": module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rows": self.rows,
            "window": [{k: v.detach().cpu() for k, v in row.items()} for row in self.window],
            "stateful": {k: obj.state_dict() for k, obj in self.phase.stateful.items()},
        }
        if self.snapshot is not None:
            frozen = self.snapshot.frozen
            out["snapshot"] = {
                "calls": self.snapshot.calls,
                "frozen": None if frozen is None else frozen.state_dict(),
            }
        if self.stopper is not None:
            out["stopper"] = self.stopper.state_dict()
        return out

    def restore(
        self, checkpoint: Checkpointer, saved: dict[str, Any], module: nn.Module, *, run_generators: bool
    ) -> None:
        """Load a saved state (:meth:`to_dict`) into the module, the optimiser and the phase's objects."""
        module.load_state_dict(saved["module"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.rows = list(saved["rows"])
        device = next(module.parameters()).device  # checkpoints are read onto the CPU
        self.window = [{k: v.to(device) for k, v in row.items()} for row in saved["window"]]
        for name, obj in self.phase.stateful.items():
            obj.load_state_dict(saved["stateful"][name])
        if self.snapshot is not None and "snapshot" in saved:
            self.snapshot.calls = int(saved["snapshot"]["calls"])
            if saved["snapshot"]["frozen"] is not None:
                frozen = copy.deepcopy(module).eval().requires_grad_(False)
                frozen.load_state_dict(saved["snapshot"]["frozen"])
                self.snapshot.frozen = frozen
        if self.stopper is not None and "stopper" in saved:
            self.stopper.load_state_dict(saved["stopper"])
        checkpoint.set_random_state(saved["random"], run_generators=run_generators)
