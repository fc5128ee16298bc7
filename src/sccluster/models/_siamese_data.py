"""SiameseClu's mini-batches for the training loop: two expression views and two graph views per cell."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from sccluster.data import CountSource, Scaler

from ._siamese_features import CHUNK, graph_view, sample_neighbors

#: Most steps in one "epoch" (the graph views and the target snapshot are renewed every epoch).
MAX_STEPS_PER_EPOCH = 100


@dataclass
class GraphData:
    """The training cells' PCA scores ``x0`` ``(n, p)``, their symmetric kNN graph, its full PPR diffusion."""

    x0: np.ndarray
    adj: sp.csr_matrix
    h_full: np.ndarray


class SiameseBatches:
    """Mini-batches of distinct cells for :class:`sccluster.nn.SiameseNet`, one iterator per phase.

    Each batch holds the scaled expression ``x``, its two augmented views ``x1``/``x2`` (the same
    tensor as ``x`` without augmentation), the graph features ``h`` (two views of the cells and of one
    sampled neighbour each), the clean full-graph features ``h_clean``, the PCA scores ``x0``, counts,
    size factors and batch codes. The graph views are two independently edge-dropped diffusions,
    renewed every :attr:`steps_per_epoch` steps of a phase (at its first step too). The order of the
    cells runs on across phases.

    Parameters
    ----------
    cfg
        The model's configuration (:class:`sccluster.models._siamese_config.SiameseConfig`): graph,
        augmentation, ablation and batch size are read from it.
    rng, gen
        numpy generator (cell order, edge drops, neighbour samples) and torch generator (expression noise).
    cells
        The cells the batches are drawn from (``None``: all; a data-parallel rank passes its shard). The
        graph views still cover every cell: neighbours may lie outside the shard.
    """

    def __init__(
        self, source: CountSource, scaler: Scaler, graph: GraphData, cfg, rng, gen, device, *, cells=None
    ) -> None:
        self.source, self.scaler, self.graph, self.cfg = source, scaler, graph, cfg
        self.rng, self.gen, self.device = rng, gen, device
        self.cells = cells
        self.n = source.n_obs if cells is None else len(cells)
        self.batch = min(cfg.optimisation.batch_size, self.n)
        self.steps_per_epoch = max(1, min(int(np.ceil(self.n / self.batch)), MAX_STEPS_PER_EPOCH))
        self._order = np.empty(0, dtype=np.int64)

    def phase(self) -> Iterator[dict]:
        """Endless batches of one phase; nothing is drawn before the first is asked for."""
        step, views = 0, None
        while True:
            if step % self.steps_per_epoch == 0:
                views = self._views()
            assert views is not None  # drawn at step 0
            yield self._batch(views)
            step += 1

    def _next_index(self) -> np.ndarray:
        """The next batch of distinct cells: consecutive slices of a permutation, a new one when it runs out.

        The last partial slice of each permutation is dropped (as ``drop_last`` does), so no batch holds
        a cell twice: a repeated cell would be its own negative in the sample-correlation loss.
        """
        if len(self._order) < self.batch:
            self._order = self.rng.permutation(self.n if self.cells is None else self.cells)
        idx, self._order = self._order[: self.batch], self._order[self.batch :]
        return idx

    def _views(self) -> list[np.ndarray]:
        g, gc, aug = self.graph, self.cfg.graph, self.cfg.augmentation
        if self.cfg.ablation.use_augmentation and aug.edge_drop > 0:
            kwargs = {"alpha": gc.ppr_alpha, "steps": gc.ppr_steps, "drop": aug.edge_drop, "rng": self.rng}
            return [graph_view(g.adj, g.x0, **kwargs) for _ in range(2)]
        return [g.h_full, g.h_full]

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=self.device)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        aug = self.cfg.augmentation
        noise = 1.0 + aug.feature_noise * torch.randn(x.shape, generator=self.gen)
        keep = (torch.rand(x.shape[1], generator=self.gen) >= aug.gene_mask).float()
        if aug.noise_std > 0:  # no draw at 0, so the random stream is that of a model without it
            x = x + aug.noise_std * torch.randn(x.shape, generator=self.gen).to(self.device)
        return x * (noise * keep).to(self.device)

    def _batch(self, views: list[np.ndarray]) -> dict:
        g = self.graph
        idx = self._next_index()
        b = self.source.batch(idx)
        counts, sf = self._t(b.counts), self._t(b.size_factors)
        codes = None if b.batch_codes is None else torch.as_tensor(b.batch_codes, device=self.device)
        x = self.scaler.transform_torch(counts, sf, codes)
        if self.cfg.ablation.use_augmentation:
            x1, x2 = self._augment(x), self._augment(x)
        else:
            x1 = x2 = x
        pos = sample_neighbors(g.adj, idx, self.rng)
        h = self._t(np.concatenate([views[0][idx], views[1][idx], views[0][pos], views[1][pos]]))
        return {
            "x": x, "x1": x1, "x2": x2, "h": h, "h_clean": self._t(g.h_full[idx]), "x0": self._t(g.x0[idx]),
            "counts": counts, "size_factors": sf, "batch_codes": codes,
        }  # fmt: skip


def embed_cells(
    net, source: CountSource, scaler: Scaler, h: np.ndarray, indices: np.ndarray | None = None
) -> np.ndarray:
    """Fused embedding ``(n, d)``, float32, of the cells of ``source`` at ``indices`` (all when ``None``).

    ``h`` holds the graph features of all the cells of ``source``; the network runs in eval mode, by chunks
    of :data:`~sccluster.models._siamese_features.CHUNK` cells.
    """
    dev = net.alpha.device
    net.eval()
    cells = np.arange(source.n_obs) if indices is None else np.asarray(indices)
    out = []
    with torch.no_grad():
        for start in range(0, len(cells), CHUNK):
            b = source.batch(cells[start : start + CHUNK])
            counts = torch.as_tensor(b.counts, device=dev)
            sf = torch.as_tensor(b.size_factors, device=dev)
            codes = None if b.batch_codes is None else torch.as_tensor(b.batch_codes, device=dev)
            x = scaler.transform_torch(counts, sf, codes)
            hb = torch.as_tensor(np.asarray(h[b.index], dtype=np.float32), device=dev)
            out.append(net.embed(x, hb).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def soft_assignments(net, z: np.ndarray) -> np.ndarray:
    """Student-t ``log q`` ``(n, K)``, float64, of embeddings ``z``, by chunks."""
    dev = net.alpha.device
    with torch.no_grad():
        parts = [
            net.log_q(torch.as_tensor(z[i : i + CHUNK], device=dev)).cpu().numpy()
            for i in range(0, len(z), CHUNK)
        ]
    return np.concatenate(parts).astype(np.float64)
