"""Sparse graph operations: symmetric normalisation, edge dropping, personalised PageRank."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def normalize_adjacency(adj: sp.spmatrix, *, self_loops: bool = True) -> sp.csr_matrix:
    """``D^-1/2 (A + I) D^-1/2`` as CSR (``A`` without ``I`` when ``self_loops=False``)."""
    adj = _with_self_loops(adj, self_loops)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    inv_sqrt[deg > 0] = deg[deg > 0] ** -0.5
    scale = sp.diags(inv_sqrt)
    return (scale @ adj @ scale).tocsr().astype(np.float32)


def drop_edges(
    adj: sp.spmatrix, rate: float, rng: np.random.Generator, *, prefer_low: bool = True
) -> sp.csr_matrix:
    """A copy of the symmetric graph ``adj`` with about ``rate`` of its edges removed.

    Each undirected edge is dropped with probability ``rate * 2 (1 - r)``, capped at 1, where
    ``r`` in ``[0, 1)`` is the rank of its weight among all edges (``prefer_low``): the
    lowest-similarity edges go first, the strongest are nearly always kept, and the expected
    fraction removed is ``rate`` (for ``rate <= 0.5``). Edges of equal weight are ranked in a random
    order. Only existing edges can be removed; the input is never modified.
    """
    if not 0.0 <= rate < 1.0:
        msg = f"edge drop rate must be in [0, 1), got {rate!r}"
        raise ValueError(msg)
    upper = sp.triu(adj, k=1, format="coo")
    m = upper.nnz
    if rate == 0.0 or m == 0:
        return sp.csr_matrix(adj, copy=True)
    if prefer_low:
        # Tied weights (all of them in a binary graph) are ranked at random, not in storage order, which
        # follows the row index and would drop the first cells' edges most often. A relative jitter of
        # 2^-30 breaks ties only: distinct float32 weights differ by a factor of at least 1 + 2^-24.
        # (One float64 sort; a two-key lexsort takes three times as long on 15M edges.)
        key = np.asarray(upper.data, dtype=np.float64) * (1.0 + rng.random(m) * 2.0**-30)
        order = np.argsort(key)
        rank = np.empty(m, dtype=np.float64)
        rank[order] = np.arange(m) / m
        prob = np.minimum(rate * 2.0 * (1.0 - rank), 1.0)
    else:
        prob = np.full(m, rate)
    keep = rng.random(m) >= prob
    kept = sp.coo_matrix((upper.data[keep], (upper.row[keep], upper.col[keep])), shape=adj.shape)
    out = (kept + kept.T).tocsr()
    out.sort_indices()
    return out.astype(adj.dtype)


def ppr_propagate(adj_norm: sp.spmatrix, x: np.ndarray, alpha: float = 0.15, steps: int = 10) -> np.ndarray:
    """Personalised PageRank diffusion of features by power iteration (APPNP).

    ``h ← (1 − α) Â h + α x`` for ``steps`` iterations from ``h = x``; converges to
    ``α (I − (1 − α) Â)⁻¹ x`` without ever forming that matrix (cost ``steps · nnz · d``).
    """
    if not 0.0 < alpha <= 1.0:
        msg = f"PPR teleport alpha must be in (0, 1], got {alpha!r}"
        raise ValueError(msg)
    x = np.asarray(x, dtype=np.float32)
    adj_norm = sp.csr_matrix(adj_norm, dtype=np.float32)
    h = x.copy()
    for _ in range(int(steps)):
        h = (1.0 - alpha) * (adj_norm @ h) + alpha * x
    return h.astype(np.float32, copy=False)


def ppr_extend(
    neighbors: np.ndarray,
    weights: np.ndarray,
    h_ref: np.ndarray,
    x_new: np.ndarray,
    degree_ref: np.ndarray,
    alpha: float = 0.15,
) -> np.ndarray:
    """PPR features of points outside the graph, attached to it by their edges to reference points.

    ``neighbors``/``weights`` ``(m, k)`` are each new point's neighbours among the reference points and
    the edge weights; ``h_ref`` the reference points' propagated features; ``degree_ref`` their degrees
    in the graph that :func:`normalize_adjacency` normalises (:func:`graph_degrees`). A new point gets
    the fixed point of the training iteration under the same ``D^-1/2 (A + I) D^-1/2``
    normalisation: with ``d = 1 + Σ_j w_j``,
    ``h = [(1 − α) Σ_j w_j h_j / √(d d_j) + α x] / (1 − (1 − α) / d)``, so a training point that
    rejoins with its own edges gets back its own converged features. The reference graph is not
    changed.
    """
    w = np.asarray(weights, dtype=np.float32)
    deg = 1.0 + w.sum(axis=1, keepdims=True)
    w_sym = w / np.sqrt(deg * np.asarray(degree_ref, dtype=np.float32)[neighbors])
    h_nb = np.asarray(h_ref[neighbors], dtype=np.float32)
    h = (1.0 - alpha) * np.einsum("mk,mkd->md", w_sym, h_nb) + alpha * np.asarray(x_new, dtype=np.float32)
    return (h / (1.0 - (1.0 - alpha) / deg)).astype(np.float32)


def graph_degrees(adj: sp.spmatrix, *, self_loops: bool = True) -> np.ndarray:
    """Weighted degrees ``Σ_j w_ij`` (the self-loop included) that :func:`normalize_adjacency` uses."""
    return np.asarray(_with_self_loops(adj, self_loops).sum(axis=1)).ravel()


def _with_self_loops(adj: sp.spmatrix, self_loops: bool) -> sp.csr_matrix:
    """``A + I`` (or ``A``) as float64 CSR."""
    adj = sp.csr_matrix(adj, dtype=np.float64)
    if self_loops:
        adj = (adj + sp.identity(adj.shape[0], format="csr", dtype=np.float64)).tocsr()
    return adj
