"""Balanced clustering targets: Sinkhorn plans whose column marginals track the cluster proportions."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch

from sccluster._distributed import all_reduce_mean

from ._sinkhorn import sinkhorn_target

#: What the running cluster proportions track (see :class:`BalancedTarget`).
Estimate = Literal["soft", "sharpened"]
ESTIMATES: tuple[str, ...] = get_args(Estimate)

# The defaults of :class:`BalancedTarget`, which the models' hyperparameters of the same meaning take too
# (one source of truth: BGFormer's ``target="balanced"`` builds the target with these).
#: Sharpening exponent of ``q``.
DEFAULT_POWER = 2.0
#: EMA momentum of the proportions, per step.
DEFAULT_MOMENTUM = 0.99
#: Sinkhorn iterations per batch.
DEFAULT_N_ITERS = 50
#: What the proportions track.
DEFAULT_ESTIMATE: Estimate = "sharpened"


class BalancedTarget:
    """Mini-batch clustering target ``P`` from Sinkhorn with running cluster proportions.

    Each call solves the entropic transport problem for ``q^power`` with uniform rows and the current
    proportions estimate ``pi`` as columns, then moves ``pi`` towards the batch's proportions
    (``estimate``; exponential moving average). The proportions are therefore estimated during training,
    not frozen, and no cluster can be emptied by the target alone: a cluster keeps the share of the
    cells that the model itself gives it.

    Known limitation of ``estimate="soft"``: the mean soft assignment is flatter than the partition it
    comes from (a Student-t ``q`` spreads every cell's mass over all centres), so with those columns the
    target pulls cells from large clusters into small ones. ``"sharpened"`` (the default) tracks the
    masses the target itself gives the clusters and removes that pull; hard (argmax) sizes feed back on
    diffuse embeddings and empty centres, and proportions frozen at their initial values are not
    estimated at all (``docs/decisions/0002-siamese-hard-marginals-reverted.md``,
    ``0006-siamese-relaxed-target-rejected.md`` and ``0008-siamese-proportion-estimate-sharpened.md``
    hold the measurements).

    Parameters
    ----------
    proportions
        Initial cluster proportions ``(K,)`` (normalised here).
    power
        Sharpening exponent of ``q`` (``> 0``; default 2, as in DEC).
    momentum
        EMA momentum of the proportion update, per call (``0 <= momentum <= 1``; default 0.99).
    n_iters
        Maximum Sinkhorn iterations (``>= 1``; default 50).
    marginal_relaxation
        ``None`` (default): the columns of the plan equal the proportions. A positive ``ρ``:
        unbalanced transport, the columns are pulled towards the proportions with weight ``ρ``
        (:func:`sccluster.ot.sinkhorn`), which weakens the pull towards equal sizes described above.
    estimate
        What the proportions track. ``"sharpened"`` (default): the batch's mean of ``q^power`` with each
        row normalised, i.e. the cluster masses of the target before any column constraint.
        ``"soft"``: the batch's mean soft assignment ``q`` (biased, see above). The plan is built from ``q^power``, so
        with these columns the constraint removes no systematic mass from large clusters (the bias
        described above); only the batch's departure from them is corrected. Unlike hard (argmax)
        sizes, the estimate is smooth and does not depend on ``pi`` itself, so it does not feed
        back on its own. The initial proportions (:meth:`from_log_q`) use the same estimate.
    """

    def __init__(
        self,
        proportions: torch.Tensor,
        *,
        power: float = DEFAULT_POWER,
        momentum: float = DEFAULT_MOMENTUM,
        n_iters: int = DEFAULT_N_ITERS,
        marginal_relaxation: float | None = None,
        estimate: Estimate = DEFAULT_ESTIMATE,
    ) -> None:
        if estimate not in ESTIMATES:
            msg = f"estimate must be one of {ESTIMATES}, got {estimate!r}"
            raise ValueError(msg)
        pi = proportions.detach().to(torch.float64)
        self.pi = pi / pi.sum()
        self.power = power
        self.momentum = momentum
        self.n_iters = n_iters
        self.marginal_relaxation = marginal_relaxation
        self.estimate = estimate

    @classmethod
    def from_log_q(cls, log_q: np.ndarray, device=None, **kwargs) -> BalancedTarget:
        """Start from the proportions of ``log_q`` ``(n, K)`` (all cells or a sample), as ``estimate`` says."""
        lq = torch.as_tensor(np.asarray(log_q), dtype=torch.float64, device=device)
        target = cls(torch.ones(lq.shape[1], dtype=torch.float64, device=device), **kwargs)
        pi = batch_proportions(lq, target.estimate, target.power)
        target.pi = pi / pi.sum()
        return target

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], device=None, **kwargs) -> BalancedTarget:
        """A target whose running proportions are those of :meth:`state_dict` (e.g. built on another process)."""
        target = cls(torch.ones(len(state["pi"]), dtype=torch.float64, device=device), **kwargs)
        target.load_state_dict(state)
        return target

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The running cluster proportions (what changes during training; for checkpoints)."""
        return {"pi": self.pi.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from a :meth:`state_dict`."""
        self.pi = state["pi"].to(device=self.pi.device, dtype=torch.float64)

    def __call__(self, log_q: torch.Tensor) -> torch.Tensor:
        """Target ``(B, K)`` for the batch's ``log q``; then update the proportions."""
        log_q = log_q.detach()
        target = sinkhorn_target(
            log_q,
            self.pi,
            power=self.power,
            n_iters=self.n_iters,
            marginal_relaxation=self.marginal_relaxation,
        )
        m = self.momentum
        # in a data-parallel run, the mean over the ranks' batches: every rank keeps the same proportions
        seen = all_reduce_mean(batch_proportions(log_q, self.estimate, self.power))
        self.pi = m * self.pi + (1.0 - m) * seen
        return target


def batch_proportions(log_q: torch.Tensor, estimate: str, power: float) -> torch.Tensor:
    """Cluster proportions ``(K,)``, float64, of a batch's ``log q`` ``(B, K)``.

    The mean of ``q`` (``"soft"``) or of ``q^power`` normalised per row (``"sharpened"``).
    """
    if estimate == "sharpened":
        return torch.softmax(power * log_q.double(), dim=1).mean(0)
    return log_q.exp().mean(0).double()
