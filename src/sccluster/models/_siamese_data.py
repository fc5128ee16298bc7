"""SiameseClu training loop: pretraining, centre initialisation and OT-clustering, by mini-batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .._errors import TrainingError
from .._utils import progress
from ..data import CountSource, Scaler
from ..nn import TargetSnapshot, dec_target, kl_clustering_loss, zinb_nll
from ..nn._siamese_module import SiameseNet, edge_loss, feature_correlation_loss, sample_correlation_loss
from ..ot import BalancedTarget
from ._schedule import phase_lr, set_lr
from ._siamese_features import graph_view, sample_neighbors

logger = logging.getLogger(__name__)


@dataclass
class TrainData:
    """Everything the loop reads: counts source (with batch codes when batched), scaler, PCA scores, graph
    and its full diffusion."""

    source: CountSource
    scaler: Scaler
    x0: np.ndarray  # (n, p) PCA scores
    adj: sp.csr_matrix  # symmetric kNN graph
    h_full: np.ndarray  # (n, p) PPR diffusion over the full graph
    views: list = field(default_factory=list)  # [h1, h2] for the current epoch


@dataclass
class TrainConfig:
    batch_size: int
    lr: float
    lr_schedule: str
    pretrain_steps: int
    cluster_steps: int
    ppr_alpha: float
    ppr_steps: int
    edge_drop: float
    feature_noise: float
    gene_mask: float
    noise_std: float
    sinkhorn_iters: int
    sinkhorn_power: float
    proportion_momentum: float
    marginal_relaxation: float | None
    proportion_estimate: str
    correlation_weight: float
    cluster_weight: float
    target_interval: int
    use_augmentation: bool
    use_correlation: bool
    use_sinkhorn: bool


def _clean_log_q(net: SiameseNet, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return net.log_q(net.embed(x, h))


class Trainer:
    """Runs the optimiser steps of one fit; ``target`` holds the cluster proportions estimate.

    In the clustering phase the target P of a batch comes from a frozen snapshot of the network
    (:class:`sccluster.nn.TargetSnapshot`) applied to the batch's clean inputs: un-augmented
    expression and the PPR features of the full graph. The snapshot is refreshed with the graph
    views, once per epoch (or every ``target_interval`` steps, if sooner), so the target does not
    chase the network it trains.
    """

    def __init__(self, net: SiameseNet, data: TrainData, cfg: TrainConfig, rng: np.random.Generator, gen: torch.Generator, device) -> None:
        self.net, self.data, self.cfg, self.rng, self.gen, self.device = net, data, cfg, rng, gen, device
        self.n = data.source.n_obs
        self.batch = min(cfg.batch_size, self.n)
        self.steps_per_epoch = max(1, min(int(np.ceil(self.n / self.batch)), 100))
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        self.target: BalancedTarget | None = None
        self.snapshot: TargetSnapshot | None = None
        self.history: list[dict[str, float]] = []
        self._order = np.empty(0, dtype=np.int64)

    # ------------------------------------------------------------------ data
    def _next_index(self) -> np.ndarray:
        """The next batch of distinct cells: consecutive slices of a permutation, a new one when it runs out.

        The last partial slice of each permutation is dropped (as ``drop_last`` does), so no batch holds
        a cell twice: a repeated cell would be its own negative in the sample-correlation loss.
        """
        if len(self._order) < self.batch:
            self._order = self.rng.permutation(self.n)
        idx, self._order = self._order[: self.batch], self._order[self.batch :]
        return idx

    def _refresh_views(self) -> None:
        d, c = self.data, self.cfg
        if c.use_augmentation and c.edge_drop > 0:
            d.views = [graph_view(d.adj, d.x0, alpha=c.ppr_alpha, steps=c.ppr_steps, drop=c.edge_drop, rng=self.rng) for _ in range(2)]
        else:
            d.views = [d.h_full, d.h_full]

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=self.device)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        noise = 1.0 + c.feature_noise * torch.randn(x.shape, generator=self.gen)
        keep = (torch.rand(x.shape[1], generator=self.gen) >= c.gene_mask).float()
        if c.noise_std > 0:  # no draw at 0, so the random stream is that of a model without it
            x = x + c.noise_std * torch.randn(x.shape, generator=self.gen).to(self.device)
        return x * (noise * keep).to(self.device)

    # ------------------------------------------------------------------ one step
    def step(self, cluster: bool) -> dict[str, float]:
        net, d, c = self.net, self.data, self.cfg
        idx = self._next_index()
        b = d.source.batch(idx)
        counts, sf = self._t(b.counts), self._t(b.size_factors)
        codes = None if b.batch_codes is None else torch.as_tensor(b.batch_codes, device=self.device)
        x = d.scaler.transform_torch(counts, sf, codes)
        if c.use_augmentation:
            x1, x2 = self._augment(x), self._augment(x)
        else:
            x1 = x2 = x
        pos = sample_neighbors(d.adj, idx, self.rng)
        h = self._t(np.concatenate([d.views[0][idx], d.views[1][idx], d.views[0][pos], d.views[1][pos]]))
        bsz = len(idx)
        za1, za2 = net.ae_encoder(torch.cat([x1, x2])).split(bsz)
        zg1, zg2, zp1, zp2 = net.graph_encoder(h).split(bsz)
        z_ae, z_g = 0.5 * (za1 + za2), 0.5 * (zg1 + zg2)
        z = net.fuse(z_ae, z_g)
        parts: dict[str, torch.Tensor] = {}
        parts["zinb"] = zinb_nll(counts, *net.decoder(z, sf, codes))
        x0 = self._t(d.x0[idx])
        parts["graph"] = F.mse_loss(net.graph_decoder(z_g), x0) + 0.5 * (
            edge_loss(zg1, zp1, zg1.roll(1, 0)) + edge_loss(zg2, zp2, zg2.roll(1, 0))
        )
        if c.use_correlation:
            parts["corr"] = c.correlation_weight * (
                0.1 * (sample_correlation_loss(za1, za2) + sample_correlation_loss(zg1, zg2))
                + feature_correlation_loss(za1, za2)
                + feature_correlation_loss(zg1, zg2)
            )
        if cluster:
            log_q = net.log_q(z)
            source = self.snapshot.log_q(x, self._t(d.h_full[idx]))  # set by run(cluster=True)
            target = self.target(source) if c.use_sinkhorn else dec_target(source.exp())
            parts["cluster"] = c.cluster_weight * kl_clustering_loss(target.float(), log_q)
        loss = sum(parts.values())
        if not torch.isfinite(loss):
            msg = "SiameseClu training diverged (loss is NaN or infinite); try a smaller lr or check the input counts"
            raise TrainingError(msg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        out = {k: float(v.detach()) for k, v in parts.items()}
        out["loss"] = float(loss.detach())
        return out

    def run(self, n_steps: int, *, cluster: bool, desc: str) -> None:
        """``n_steps`` optimiser steps; graph views and the target snapshot are renewed every epoch."""
        self.net.train()
        if cluster:
            interval = min(self.cfg.target_interval, self.steps_per_epoch)
            self.snapshot = TargetSnapshot(self.net, interval, _clean_log_q)
        epoch: list[dict[str, float]] = []
        bar = progress(range(n_steps), desc=desc, leave=False)
        for s in bar:
            if s % self.steps_per_epoch == 0:
                self._refresh_views()
            if self.cfg.lr_schedule == "cosine":  # no write at "constant": the optimiser is left as built
                set_lr(self.opt, phase_lr(self.cfg.lr, s, n_steps))
            epoch.append(self.step(cluster))
            if len(epoch) == self.steps_per_epoch or s == n_steps - 1:
                rec = {k: float(np.mean([e[k] for e in epoch if k in e])) for k in epoch[0]}
                rec["phase"] = 1.0 if cluster else 0.0
                self.history.append(rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", refresh=False)
                epoch = []
        self.data.views = []
        self.snapshot = None

    def init_proportions(self, log_q_all: np.ndarray) -> None:
        """Start the cluster proportions at the mean soft assignment of all cells."""
        c = self.cfg
        self.target = BalancedTarget.from_log_q(
            log_q_all, self.device, power=c.sinkhorn_power, momentum=c.proportion_momentum, n_iters=c.sinkhorn_iters,
            relaxation=c.marginal_relaxation, estimate=c.proportion_estimate,
        )

    @property
    def pi(self) -> torch.Tensor | None:
        """Current cluster proportions estimate (``None`` without the Sinkhorn target)."""
        return None if self.target is None else self.target.pi
