"""One training loop for the deep models: phases of optimiser steps over a batch iterator.

The loop sees a module, an optimiser specification and one :class:`Phase` at a time (a name, a step
count, an iterator of mini-batches and what to do besides stepping); it never sees the estimator or
AnnData. The module is any ``torch.nn.Module`` with

- ``forward(batch) -> outputs`` and ``loss(batch, outputs) ->`` :class:`sccluster.nn.LossOutput`,
- ``target_log_q(batch)``: soft assignments of the batch's clean inputs, needed only by phases with a
  clustering-target snapshot (``snapshot_interval``); the loop adds them to the batch as
  ``batch["target_log_q"]``, computed by a frozen copy of the module (:class:`sccluster.nn.TargetSnapshot`).

With a :class:`~sccluster.train.Checkpointer` the state of every phase is saved every few steps and at
its end, and a resumed run continues from it (see :mod:`sccluster.train._checkpoint`). A data-parallel
run wraps ``module`` and shards the batch iterators (each rank draws its own batches; the loop itself is
rank-agnostic).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

import torch
from torch import nn

from sccluster._distributed import Context
from sccluster._errors import TrainingError
from sccluster._utils import progress
from sccluster.nn import EarlyStopping, LossOutput, TargetSnapshot

from ._checkpoint import Checkpointer
from ._phase_state import Batch, ForwardAndLoss, PhaseState, Trainable
from ._schedule import Schedule, phase_lr, set_lr

logger = logging.getLogger(__name__)


class Validator(Protocol):
    """A held-out criterion for early stopping: ``loss(module)`` (lower is better), logged as ``name``."""

    name: str

    def loss(self, module: nn.Module) -> float: ...


@dataclass(frozen=True)
class OptimizerSpec:
    """Optimiser and learning-rate schedule of a run.

    Attributes
    ----------
    algorithm
        ``"adam"`` or ``"adamw"`` (decoupled weight decay).
    lr
        Learning rate (``> 0``).
    weight_decay
        Weight decay (``>= 0``).
    schedule
        ``"constant"``: ``lr`` throughout (the optimiser's rate is never written); ``"cosine"``: within
        each phase every group's rate falls along a half cosine from ``lr`` to about zero (:func:`phase_lr`).
    scope
        ``"phase"``: a new optimiser over the module's parameters at the start of every phase;
        ``"run"``: one optimiser for the whole run, its moment estimates carried across phases;
        parameters that appear later (cluster centres) join it as a new parameter group.
    """

    algorithm: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Schedule = "constant"
    scope: Literal["phase", "run"] = "phase"

    def build(self, params) -> torch.optim.Optimizer:
        """A new optimiser over ``params``."""
        cls = torch.optim.AdamW if self.algorithm == "adamw" else torch.optim.Adam
        return cls(params, lr=self.lr, weight_decay=self.weight_decay)


@dataclass
class Phase:
    """A stretch of training with one loss and one schedule (pretraining, clustering).

    Attributes
    ----------
    name
        Its name in the history (``"stage"`` column), the progress bar and messages.
    n_steps
        Optimiser steps (at most: early stopping may end the phase sooner); ``0`` skips the phase.
    batches
        Endless iterator of mini-batches (dicts of tensors the module reads).
    log_every
        Steps per history row; each row holds the mean of the loss and its terms over those steps (the
        last row of a phase may average fewer).
    snapshot_interval
        ``None``: no clustering target. Else the batches get ``target_log_q`` from a frozen copy of the
        module, refreshed every ``snapshot_interval`` steps starting with the first.
    validation
        Early stopping: evaluated at every history row (logged under ``validation.name``); the phase
        stops after ``patience`` evaluations without a new best and the best weights are restored.
    patience
        Evaluations without a lower validation loss before the phase stops.
    stateful
        Objects besides the module whose state changes during the phase and belongs in its checkpoint
        (``state_dict()`` / ``load_state_dict(state)``), by name: the clustering target's running cluster
        proportions.
    """

    name: str
    n_steps: int
    batches: Iterator[Batch]
    log_every: int = 50
    snapshot_interval: int | None = None
    validation: Validator | None = None
    patience: int = 5
    stateful: Mapping[str, Any] = field(default_factory=dict)


class Trainer:
    """Runs the phases of one fit on ``module`` and keeps the optimiser and the history between them.

    Parameters
    ----------
    module
        The network (see the module docstring for what it must provide).
    optimizer
        Optimiser, schedule and whether the optimiser lives for a phase or the run.
    name
        Model name for the progress bars and the messages.
    checkpoint
        Saves each phase's state and, when resuming, restores it (``None``: no checkpoints).
    parallel
        The data-parallel run this process belongs to (``None``: one process). With several processes the
        module is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` for each phase (its
        construction gives every rank rank 0's weights; the gradients are averaged over the ranks), and
        each rank's ``batches`` must be its own shard.

    Attributes
    ----------
    history
        One dict per history row of every phase run: ``stage`` (the phase's name), ``step`` (1-based,
        within the phase), ``loss``, then the module's named terms and, with early stopping, the
        validation loss.
    optimizer
        The optimiser of the last phase (``None`` before the first).
    """

    def __init__(
        self,
        module: nn.Module,
        optimizer: OptimizerSpec,
        *,
        name: str,
        checkpoint: Checkpointer | None = None,
        parallel: Context | None = None,
    ) -> None:
        self.module = module
        self.spec = optimizer
        self.name = name
        self.checkpoint = checkpoint
        self.parallel = parallel
        self.optimizer: torch.optim.Optimizer | None = None
        self.history: list[dict[str, Any]] = []
        self._phases_run = 0

    def _optimizer(self) -> torch.optim.Optimizer:
        params = list(self.module.parameters())
        if self.optimizer is None or self.spec.scope == "phase":
            self.optimizer = self.spec.build(params)
        else:
            known = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
            new = [p for p in params if id(p) not in known]
            if new:
                self.optimizer.add_param_group({"params": new})
        return self.optimizer

    def _step_loss(self) -> Callable[[Batch], LossOutput]:
        """``batch -> module.loss(batch, module(batch))``, data-parallel with several processes.

        The data-parallel wrapper is new for each phase (parameters may have been added) and wraps the
        forward pass and the loss together, since the losses use the module's parameters too. The graph is
        static within a phase (the same parameters are used at every step; the centres are unused while
        pretraining).
        """
        if self.parallel is None or not self.parallel.distributed:
            trainable = cast(Trainable, self.module)
            return lambda batch: trainable.loss(batch, self.module(batch))
        from torch.nn.parallel import DistributedDataParallel

        device = next(self.module.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        ddp = DistributedDataParallel(ForwardAndLoss(self.module), device_ids=ids, static_graph=True)

        def step_loss(batch: Batch) -> LossOutput:
            total, terms = ddp(batch)
            return LossOutput(total, terms)

        return step_loss

    def run(self, phase: Phase) -> list[dict[str, Any]]:
        """Run ``phase``; return its history rows (also appended to :attr:`history`).

        Raises :class:`TrainingError` at the first step whose loss is NaN or infinite. With a checkpoint
        to resume from, a completed phase is restored instead of trained and an interrupted one continues
        from its last saved step.
        """
        index = self._phases_run
        self._phases_run += 1
        if phase.n_steps <= 0:
            return []
        module, spec = self.module, self.spec
        opt = self._optimizer()
        stopper = None if phase.validation is None else EarlyStopping(module, phase.patience)
        snapshot = None
        if phase.snapshot_interval is not None:
            snapshot = TargetSnapshot(module, phase.snapshot_interval, _target_log_q)
        state = PhaseState(phase, opt, stopper, snapshot)
        start = 0
        ckpt = self.checkpoint
        saved = None if ckpt is None else ckpt.load(index, phase.name)
        if ckpt is not None and saved is not None:
            if saved["complete"]:
                state.restore(ckpt, saved, module, run_generators=True)
                logger.info(
                    "%s %s: restored from its checkpoint (%d steps)", self.name, phase.name, saved["step"]
                )
                module.train()
                self.history += state.rows
                return state.rows
            for _ in range(saved["step"]):  # the batches already trained on: their draws, no computation
                next(phase.batches)
            ckpt.check_streams(saved["random"], ckpt.path(index, phase.name))
            state.restore(ckpt, saved, module, run_generators=False)
            start = saved["step"]
            logger.info("%s %s: resumed at step %d of %d", self.name, phase.name, start, phase.n_steps)
        module.train()
        step_loss = self._step_loss()
        bar = progress(range(start, phase.n_steps), desc=f"{self.name} {phase.name}", leave=False)
        step = start - 1
        for step in bar:
            if spec.schedule == "cosine":  # no write at "constant": the optimiser keeps its rate
                set_lr(opt, phase_lr(spec.lr, step, phase.n_steps))
            batch = next(phase.batches)
            if snapshot is not None:
                batch["target_log_q"] = snapshot.log_q(batch)
            losses = step_loss(batch)
            if not torch.isfinite(losses.total):
                msg = (
                    f"{self.name} training diverged ({phase.name} step {step + 1}: "
                    f"loss is {losses.total.item()}); lower the learning rate (lr={spec.lr:g}), e.g. lr={spec.lr / 10:g}"
                )
                raise TrainingError(msg)
            opt.zero_grad(set_to_none=True)
            losses.total.backward()
            opt.step()
            state.window.append(
                {"loss": losses.total.detach(), **{k: v.detach() for k, v in losses.terms.items()}}
            )
            stop = False
            if len(state.window) == phase.log_every or step == phase.n_steps - 1:
                row: dict[str, Any] = {"stage": phase.name, "step": step + 1, **_means(state.window)}
                state.rows.append(row)
                state.window = []
                bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
                if stopper is not None and phase.validation is not None:
                    row[phase.validation.name] = phase.validation.loss(module)
                    stop = stopper.update(row[phase.validation.name], step + 1)
            if stop:
                break
            if ckpt is not None and (step + 1) % ckpt.every == 0 and step + 1 < phase.n_steps:
                ckpt.save(index, phase.name, state.to_dict(module, step + 1, complete=False))
        if stopper is not None and phase.validation is not None:
            stopper.restore()
            logger.info(
                "%s %s: %d steps; kept the weights of step %d (%s %.4f)",
                self.name, phase.name, state.rows[-1]["step"], stopper.best_step, phase.validation.name,
                stopper.best_loss,
            )  # fmt: skip
        if ckpt is not None:
            ckpt.save(index, phase.name, state.to_dict(module, step + 1, complete=True))
        self.history += state.rows
        return state.rows


def _target_log_q(frozen: nn.Module, batch: Batch) -> torch.Tensor:
    return cast(Trainable, frozen).target_log_q(batch)


def _means(window: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Mean of every quantity over the steps of a window that report it (float64)."""
    keys = dict.fromkeys(k for row in window for k in row)
    return {k: torch.stack([row[k] for row in window if k in row]).double().mean().item() for k in keys}
