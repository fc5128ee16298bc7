"""SiameseClu inputs: a streamed, seeded PCA of the scaled genes and the kNN graph features.

The PCA is fitted once on a seeded subsample and stored with the model, so new cells are
projected with the same loadings. Graph features are PPR diffusions of the PCA scores over the
sparse kNN graph; augmented graph views drop edges before diffusing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sccluster import graph
from sccluster.data import CountSource, Scaler

#: Cells read and converted to dense at once when projecting.
CHUNK = 4096


@dataclass
class Projector:
    """Scaled expression to PCA scores: ``(x − mean) · componentsᵀ / scale``."""

    components: np.ndarray  # (p, G) float32
    mean: np.ndarray  # (G,) float32
    scale: float

    def project(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) @ self.components.T / self.scale).astype(np.float32)

    def state_dict(self) -> dict:
        return {"components": self.components, "mean": self.mean, "scale": self.scale}

    @classmethod
    def from_state_dict(cls, state: dict) -> Projector:
        return cls(np.asarray(state["components"]), np.asarray(state["mean"]), float(state["scale"]))


def fit_projector(
    source: CountSource, scaler: Scaler, n_pcs: int, seed: int, max_cells: int = 20_000
) -> Projector:
    """Randomized PCA of the scaled genes on at most ``max_cells`` cells (seeded subsample).

    The fit is :func:`sccluster.pp.fit_subsample_pca`, the one ``pp.prepare`` uses, on the model's own scaling.

    Cells are scaled as ``scaler`` scales them: with per-batch statistics (and a ``source`` with batch
    codes) each with its own batch's, so the components do not follow the batches' shifts.
    """
    from sccluster.pp import fit_subsample_pca

    def scaled_rows(rows: np.ndarray) -> np.ndarray:
        b = source.batch(rows)
        return scaler.transform(b.counts, b.size_factors, b.batch_codes)

    pca, _ = fit_subsample_pca(
        scaled_rows, source.n_obs, n_comps=n_pcs, max_cells=max_cells, seed=seed, solver="randomized"
    )
    scale = float(np.sqrt(pca.explained_variance_.mean()))
    return Projector(pca.components_.astype(np.float32), pca.mean_.astype(np.float32), max(scale, 1e-6))


def project_all(source: CountSource, scaler: Scaler, projector: Projector) -> np.ndarray:
    """PCA scores ``(n, p)`` of every cell, streamed by row chunks (scaled per batch as in :func:`fit_projector`)."""
    out = np.empty((source.n_obs, projector.components.shape[0]), dtype=np.float32)
    for start in range(0, source.n_obs, CHUNK):
        b = source.batch(np.arange(start, min(start + CHUNK, source.n_obs)))
        out[start : start + len(b.index)] = projector.project(
            scaler.transform(b.counts, b.size_factors, b.batch_codes)
        )
    return out


def graph_view(
    adj: sp.csr_matrix, x0: np.ndarray, *, alpha: float, steps: int, drop: float = 0.0, rng=None
) -> np.ndarray:
    """PPR-diffused features over ``adj`` (a fresh edge-dropped copy when ``drop > 0``)."""
    if drop > 0:
        adj = graph.drop_edges(adj, drop, rng)
    return graph.ppr_propagate(graph.normalize_adjacency(adj), x0, alpha=alpha, steps=steps)


def sample_neighbors(adj: sp.csr_matrix, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random graph neighbour of each cell in ``idx`` (the cell itself when isolated)."""
    start, stop = adj.indptr[idx], adj.indptr[idx + 1]
    deg = stop - start
    pick = start + (rng.random(len(idx)) * np.maximum(deg, 1)).astype(np.int64)
    out = idx.copy()
    has = deg > 0
    out[has] = adj.indices[pick[has]]
    return out


def new_cell_features(
    index: graph.NeighborIndex | graph.BalancedNeighborIndex,
    sigma_ref: np.ndarray,
    degree_ref: np.ndarray,
    h_ref: np.ndarray,
    x0_new: np.ndarray,
    *,
    n_neighbors: int,
    alpha: float,
    weights: str,
) -> np.ndarray:
    """Propagated features of new cells.

    The new cells' neighbours among the training cells (``index``) attach them to the training graph under
    its normalisation (``degree_ref``: the training cells' degrees; see :func:`sccluster.graph.ppr_extend`).

    ``n_neighbors`` is capped at the number of training cells. With a :class:`sccluster.graph.BalancedNeighborIndex`
    (a model fitted with batches) the neighbours are drawn from every training batch by the rule of the
    training graph. This is the converged diffusion; a model
    fitted with no diffusion steps uses the PCA scores instead and does not call it.
    """
    idx, dist = index.query(x0_new, n_neighbors)
    sigma_new = dist[:, -1]
    w = graph.edge_weights(dist, sigma_new, sigma_ref[idx], kind=weights)
    out = np.empty((x0_new.shape[0], h_ref.shape[1]), dtype=np.float32)
    for start in range(0, x0_new.shape[0], CHUNK):
        sl = slice(start, start + CHUNK)
        out[sl] = graph.ppr_extend(idx[sl], w[sl], h_ref, x0_new[sl], degree_ref, alpha=alpha)
    return out


def build_cell_graph(
    source: CountSource,
    max_value: float | None,
    gc,
    batch_codes: np.ndarray | None,
    n_batches: int | None,
    seed: int,
) -> tuple:
    """SiameseClu's single-node step over all cells: ``(scaler, projector, x0, adj, sigma, h_full)``.

    The scaler (per batch with ``batch_codes``), the streamed PCA ``x0``, the kNN graph ``adj`` (batch-balanced
    with batches) with its bandwidths ``sigma``, and its PPR diffusion ``h_full``; ``gc`` is the graph
    configuration (:class:`sccluster.models._siamese_config.Graph`).
    """
    scaler = Scaler.fit(source, max_value=max_value, batch_codes=batch_codes, n_batches=n_batches)
    projector = fit_projector(source, scaler, gc.n_pcs, seed)
    x0 = project_all(source, scaler, projector)
    k_nn = min(gc.n_neighbors, source.n_obs - 1)
    adj, sigma = graph.knn_graph(x0, k_nn, weights=gc.graph_weights, seed=seed, batch_codes=batch_codes)
    h_full = graph.ppr_propagate(graph.normalize_adjacency(adj), x0, alpha=gc.ppr_alpha, steps=gc.ppr_steps)
    return scaler, projector, x0, adj, sigma, h_full
