"""Balanced clustering targets: Sinkhorn plans whose column marginals track the cluster proportions."""

from __future__ import annotations

import numpy as np
import torch

from ._sinkhorn import sinkhorn_target


class BalancedTarget:
    """Mini-batch clustering target ``P`` from Sinkhorn with running cluster proportions.

    Each call solves the entropic transport problem for ``q^power`` with uniform rows and the current
    proportions estimate ``pi`` as columns, then moves ``pi`` towards the batch's mean soft
    assignment (exponential moving average). The proportions are therefore estimated during training,
    not frozen, and no cluster can be emptied by the target alone: a cluster keeps the share of the
    cells that the model itself gives it.

    Known limitation: the mean soft assignment is flatter than the partition it comes from (a
    Student-t ``q`` spreads every cell's mass over all centres), so the target pulls cells from large
    clusters into small ones. Measured without labels with SiameseClu on cellbench_celseq2_5cl
    (k = 5, seed 0): an initial partition identical to k-means on PCA, with clusters of 62–177 cells,
    ended with 83–156. Over the seven benchmark datasets (k given, seed 0), SiameseClu's clustering
    stage narrowed the spread of cluster sizes on six (coefficient of variation: worm_neuron 0.46 to
    0.28, pbmc_4k 0.37 to 0.26, the bladder sets 0.47 to 0.38 and 0.54 to 0.43; paul15 rose, 0.42 to
    0.50) and kept 0.50–0.91 of its initial partition (ARI). Tracking the hard (argmax) cluster
    sizes instead removes the pull on cellbench but feeds back on diffuse embeddings: with k given
    (seed 0) the clustering stage then emptied 4 of 10 centres on worm_neuron and 8 of 19 on paul15.
    Freezing the proportions at the initial sizes, as the published code does, is ruled out: they
    must be estimated and updated during training. ``estimate="sharpened"`` does neither: over the same
    seven datasets (k given, seeds 0-2) SiameseClu's final clusters are less even with it than with
    the soft mean on all seven (mean coefficient of variation of the sizes: worm_neuron 0.51 to 0.90,
    paul15 0.59 to 0.92, pbmc_4k 0.62 to 0.73), and no centre was emptied in 21 runs. It is
    SiameseClu's default (``docs/decisions/0008-siamese-proportion-estimate-sharpened.md``);
    the class keeps ``"soft"`` as its own default.

    Parameters
    ----------
    proportions
        Initial cluster proportions ``(K,)`` (normalised here).
    power
        Sharpening exponent of ``q`` (2 as in DEC).
    momentum
        EMA momentum of the proportion update, per call.
    n_iters
        Maximum Sinkhorn iterations.
    relaxation
        ``None`` (default): the columns of the plan equal the proportions. A positive ``ρ``:
        unbalanced transport, the columns are pulled towards the proportions with weight ``ρ``
        (:func:`sccluster.ot.sinkhorn`), which weakens the pull towards equal sizes described above.
        Measured without labels with SiameseClu (k given, seed 0), ``ρ = 1`` kept 1.0 of the initial
        partition on cellbench (sizes unchanged), 0.89 on worm_neuron (0.80 balanced) and 0.93 on
        pbmc_4k (0.86), emptied no centre, and kept 0.46 on paul15 (0.50). Opt-in
        (``docs/decisions/0006-siamese-relaxed-target-rejected.md``).
    estimate
        What the proportions track. ``"soft"`` (default): the batch's mean soft assignment ``q``.
        ``"sharpened"``: the batch's mean of ``q^power`` with each row normalised, i.e. the cluster
        masses of the target before any column constraint. The plan is built from ``q^power``, so
        with these columns the constraint removes no systematic mass from large clusters (the bias
        described above); only the batch's departure from them is corrected. Unlike hard (argmax)
        sizes, the estimate is smooth and does not depend on ``pi`` itself, so it does not feed
        back on its own. The initial proportions (:meth:`from_log_q`) use the same estimate.
    """

    def __init__(
        self,
        proportions: torch.Tensor,
        *,
        power: float = 2.0,
        momentum: float = 0.99,
        n_iters: int = 100,
        relaxation: float | None = None,
        estimate: str = "soft",
    ) -> None:
        if estimate not in ESTIMATES:
            msg = f"estimate must be one of {ESTIMATES}, got {estimate!r}"
            raise ValueError(msg)
        pi = proportions.detach().to(torch.float64)
        self.pi = pi / pi.sum()
        self.power = power
        self.momentum = momentum
        self.n_iters = n_iters
        self.relaxation = relaxation
        self.estimate = estimate

    @classmethod
    def from_log_q(cls, log_q: np.ndarray, device=None, **kwargs) -> BalancedTarget:
        """Start from the proportions of ``log_q`` ``(n, K)`` (all cells or a sample), as ``estimate`` says."""
        lq = torch.as_tensor(np.asarray(log_q), dtype=torch.float64, device=device)
        target = cls(torch.ones(lq.shape[1], dtype=torch.float64, device=device), **kwargs)
        pi = batch_proportions(lq, target.estimate, target.power)
        target.pi = pi / pi.sum()
        return target

    def __call__(self, log_q: torch.Tensor) -> torch.Tensor:
        """Target ``(B, K)`` for the batch's ``log q``; then update the proportions."""
        log_q = log_q.detach()
        target = sinkhorn_target(
            log_q, self.pi, power=self.power, n_iters=self.n_iters, col_relaxation=self.relaxation
        )
        m = self.momentum
        self.pi = m * self.pi + (1.0 - m) * batch_proportions(log_q, self.estimate, self.power)
        return target


ESTIMATES = ("soft", "sharpened")


def batch_proportions(log_q: torch.Tensor, estimate: str, power: float) -> torch.Tensor:
    """Cluster proportions ``(K,)``, float64, of a batch's ``log q`` ``(B, K)``: mean of ``q`` (``"soft"``)
    or of ``q^power`` normalised per row (``"sharpened"``)."""
    if estimate == "sharpened":
        return torch.softmax(power * log_q.double(), dim=1).mean(0)
    return log_q.exp().mean(0).double()
