"""Sparse graph operations: symmetric normalisation, edge dropping, personalised PageRank."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def normalize_adjacency(adj: sp.spmatrix, *, self_loops: bool = True) -> sp.csr_matrix:
    """``D^-1/2 (A + I) D^-1/2`` as CSR (``A`` without ``I`` when ``self_loops=False``)."""
    adj = sp.csr_matrix(adj, dtype=np.float64)
    if self_loops:
        adj = (adj + sp.identity(adj.shape[0], format="csr", dtype=np.float64)).tocsr()
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    inv_sqrt[deg > 0] = deg[deg > 0] ** -0.5
    scale = sp.diags(inv_sqrt)
    return (scale @ adj @ scale).tocsr().astype(np.float32)


def drop_edges(adj: sp.spmatrix, rate: float, rng: np.random.Generator, *, prefer_low: bool = True) -> sp.csr_matrix:
    """A copy of the symmetric graph ``adj`` with about ``rate`` of its edges removed.

    Each undirected edge is dropped with probability ``rate * 2 (1 - r)``, capped at 1, where
    ``r`` in ``[0, 1)`` is the rank of its weight among all edges (``prefer_low``): the
    lowest-similarity edges go first, the strongest are nearly always kept, and the expected
    fraction removed is ``rate`` (for ``rate <= 0.5``). Only existing edges can be removed; the
    input is never modified.
    """
    if not 0.0 <= rate < 1.0:
        msg = f"edge drop rate must be in [0, 1), got {rate!r}"
        raise ValueError(msg)
    upper = sp.triu(adj, k=1, format="coo")
    m = upper.nnz
    if rate == 0.0 or m == 0:
        return sp.csr_matrix(adj, copy=True)
    if prefer_low:
        rank = np.empty(m, dtype=np.float64)
        rank[np.argsort(upper.data, kind="stable")] = np.arange(m) / m
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
    neighbors: np.ndarray, weights: np.ndarray, h_ref: np.ndarray, x_new: np.ndarray, alpha: float = 0.15
) -> np.ndarray:
    """One PPR step for points outside the graph: ``h = (1 − α) Σ_j ŵ_j h_ref[j] + α x_new``.

    ``neighbors``/``weights`` ``(m, k)`` are each new point's neighbours among the reference
    points and the edge weights (normalised per row here); ``h_ref`` the reference points'
    propagated features. The reference graph is not changed.
    """
    w = np.asarray(weights, dtype=np.float32)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    agg = np.einsum("mk,mkd->md", w, np.asarray(h_ref[neighbors], dtype=np.float32))
    return ((1.0 - alpha) * agg + alpha * np.asarray(x_new, dtype=np.float32)).astype(np.float32)
