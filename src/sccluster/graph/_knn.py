"""k-nearest-neighbour graphs as sparse CSR matrices with adaptive-bandwidth weights.

With batch codes (donors, samples, ...) the neighbours are batch-balanced, in the spirit of BBKNN
(Polański et al. 2020): each point takes its nearest neighbours in every batch separately
(:class:`BalancedNeighborIndex`), so a batch effect that the features keep cannot leave a batch's points
linked only among themselves.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from sccluster._utils import prefer_blocking_numba_threads

logger = logging.getLogger(__name__)

#: Up to this many reference points neighbours are exact (scikit-learn); above, pynndescent.
EXACT_MAX = 20_000


class NeighborIndex:
    """Euclidean nearest-neighbour index over fixed reference points, built once and queried often.

    Exact (scikit-learn) up to ``exact_max`` reference points, pynndescent above. Building the
    approximate index over a million points takes minutes, so callers that query new points
    repeatedly (``predict``) keep one index instead of calling :func:`nearest_neighbors` each time.

    Parameters
    ----------
    x
        Reference points ``(n, d)``.
    n_neighbors
        Neighbours per point of the approximate index's graph (queries may ask for any number).
    seed
        Seed of the approximate search.
    exact_max
        Largest ``n`` searched exactly.
    """

    def __init__(self, x: np.ndarray, n_neighbors: int, *, seed: int = 0, exact_max: int = EXACT_MAX) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.n_obs = x.shape[0]
        self.exact = self.n_obs <= exact_max
        k = min(int(n_neighbors) + 1, self.n_obs)  # + 1: a reference point is its own nearest neighbour
        if self.exact:
            from sklearn.neighbors import NearestNeighbors

            self._x: np.ndarray | None = x  # small (<= exact_max rows); self_neighbors queries it
            self._nn = NearestNeighbors(n_neighbors=k).fit(x)
        else:
            from pynndescent import NNDescent

            prefer_blocking_numba_threads()
            self._x = None  # the approximate index keeps the points and its own neighbour graph
            self._nn = NNDescent(x, n_neighbors=max(k, 15), random_state=seed, n_jobs=1, low_memory=True)

    def self_neighbors(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest neighbours of each reference point among the others, nearest first."""
        k = min(k + 1, self.n_obs)
        if self.exact:
            dist, idx = self._nn.kneighbors(self._x, n_neighbors=k)
        else:
            idx, dist = self._nn.neighbor_graph
            idx, dist = idx[:, :k], dist[:, :k]
        return _drop_self(np.asarray(idx, dtype=np.int64), np.asarray(dist, dtype=np.float32))

    def query(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest reference points of each row of ``q``: ``(indices, distances)``, nearest first."""
        q = np.ascontiguousarray(q, dtype=np.float32)
        k = min(k, self.n_obs)
        if self.exact:
            dist, idx = self._nn.kneighbors(q, n_neighbors=k)
        else:
            idx, dist = self._nn.query(q, k=k)
        return np.asarray(idx, dtype=np.int64), np.asarray(dist, dtype=np.float32)


def nearest_neighbors(
    x: np.ndarray,
    n_neighbors: int,
    *,
    query: np.ndarray | None = None,
    seed: int = 0,
    exact_max: int = EXACT_MAX,
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean nearest neighbours among the rows of ``x`` (a one-off :class:`NeighborIndex`).

    Parameters
    ----------
    x
        Reference points ``(n, d)``.
    n_neighbors
        Neighbours per point.
    query
        Points to find neighbours for, ``(m, d)``. ``None`` queries ``x`` itself and leaves each
        point's own entry out.
    seed
        Seed of the approximate search (pynndescent, used when ``n > exact_max``).

    Returns
    -------
    ``(indices, distances)``, each ``(m, n_neighbors)``, nearest first.
    """
    index = NeighborIndex(x, n_neighbors, seed=seed, exact_max=exact_max)
    if query is None:
        return index.self_neighbors(n_neighbors)
    return index.query(query, n_neighbors)


def _drop_self(idx: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index (or its farthest neighbour when it is absent)."""
    rows = np.arange(idx.shape[0])[:, None]
    is_self = idx == rows
    no_self = ~is_self.any(axis=1)
    is_self[no_self, -1] = True  # keep k neighbours per row
    first = np.argmax(is_self, axis=1)
    keep = np.ones_like(is_self)
    keep[np.arange(idx.shape[0]), first] = False
    k = idx.shape[1] - 1
    return idx[keep].reshape(-1, k), dist[keep].reshape(-1, k)


def per_batch_neighbors(n_neighbors: int, batch_sizes: np.ndarray) -> np.ndarray:
    """Neighbours a point takes from each batch: ``max(1, n_neighbors // n_batches)``, capped at ``size - 1``.

    ``batch_sizes`` holds the points of each batch (``(n_batches,)``; empty batches count among the
    batches and give 0). The cap keeps the count the same for a batch's own points (which leave
    themselves out) and for the others, so every point gets ``sum`` of the result neighbours.
    """
    sizes = np.asarray(batch_sizes, dtype=np.int64)
    want = max(1, int(n_neighbors) // max(len(sizes), 1))
    return np.clip(np.minimum(want, sizes - 1), 0, None)


class BalancedNeighborIndex:
    """Batch-balanced Euclidean neighbours: one :class:`NeighborIndex` per batch, queried for every point.

    A point's neighbours are its :func:`per_batch_neighbors` nearest points *in each batch* (its own
    batch without itself), merged and sorted nearest first: ``n_batches`` exact or approximate searches
    of ``n_b`` reference points, so the cost is that of one search per batch and nothing of size
    batches x points or points x points is built.

    Parameters
    ----------
    x
        Reference points ``(n, d)``.
    batch_codes
        Batch of every reference point, integers ``(n,)`` in ``[0, n_batches)``.
    n_neighbors
        Neighbours per point in all batches together (``n_neighbors // n_batches`` from each, at least 1).
    seed, exact_max
        As :class:`NeighborIndex`.
    """

    def __init__(self, x: np.ndarray, batch_codes: np.ndarray, n_neighbors: int, *, seed: int = 0,
                 exact_max: int = EXACT_MAX) -> None:  # fmt: skip
        self._x = np.ascontiguousarray(x, dtype=np.float32)
        self.codes = np.asarray(batch_codes, dtype=np.int64)
        if self.codes.shape != (self._x.shape[0],):
            msg = f"batch_codes has shape {self.codes.shape}, expected ({self._x.shape[0]},)"
            raise ValueError(msg)
        sizes = np.bincount(self.codes, minlength=int(self.codes.max(initial=0)) + 1)
        self.k_per_batch = per_batch_neighbors(n_neighbors, sizes)
        self.members = [np.flatnonzero(self.codes == b) for b in range(len(sizes))]
        self.indices = [
            NeighborIndex(self._x[m], int(k), seed=seed, exact_max=exact_max) if k > 0 else None
            for m, k in zip(self.members, self.k_per_batch, strict=True)
        ]

    @property
    def n_neighbors(self) -> int:
        """Neighbours every point gets (the sum over batches)."""
        return int(self.k_per_batch.sum())

    def self_neighbors(self) -> tuple[np.ndarray, np.ndarray]:
        """The balanced neighbours of every reference point among the others: ``(indices, distances)``."""
        n = self._x.shape[0]
        idx = np.empty((n, self.n_neighbors), dtype=np.int64)
        dist = np.empty((n, self.n_neighbors), dtype=np.float32)
        col = 0
        for b, (members, index) in enumerate(zip(self.members, self.indices, strict=True)):
            k = int(self.k_per_batch[b])
            if index is None:
                continue
            own_idx, own_dist = index.self_neighbors(k)
            idx[members, col : col + k], dist[members, col : col + k] = members[own_idx], own_dist
            others = np.flatnonzero(self.codes != b)
            if others.size:
                o_idx, o_dist = index.query(self._x[others], k)
                idx[others, col : col + k], dist[others, col : col + k] = members[o_idx], o_dist
            col += k
        return _nearest_first(idx, dist)

    def query(self, q: np.ndarray, n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Balanced neighbours among the reference points of each row of ``q``, nearest first.

        ``n_neighbors`` (all batches together) defaults to the one the index was built with; each batch
        gives :func:`per_batch_neighbors` of it.
        """
        k_per_batch = self.k_per_batch if n_neighbors is None else per_batch_neighbors(
            n_neighbors, np.asarray([len(m) for m in self.members])
        )  # fmt: skip
        parts = [
            index.query(q, int(k))
            for index, k in zip(self.indices, k_per_batch, strict=True)
            if index is not None and k > 0
        ]
        members = [
            m
            for m, index, k in zip(self.members, self.indices, k_per_batch, strict=True)
            if index is not None and k > 0
        ]
        idx = np.concatenate([m[i] for m, (i, _) in zip(members, parts, strict=True)], axis=1)
        dist = np.concatenate([d for _, d in parts], axis=1)
        return _nearest_first(idx, dist)


def _nearest_first(idx: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(dist, order, axis=1)


def edge_weights(
    dist: np.ndarray, sigma_rows: np.ndarray, sigma_cols: np.ndarray | None, kind: str = "adaptive"
) -> np.ndarray:
    """Edge weights from distances ``(m, k)``.

    ``"adaptive"``: self-tuning Gaussian ``exp(-d² / (σ_i σ_j))`` with σ the distance to a point's
    farthest kNN neighbour, so weights stay in about ``[e⁻¹, 1]`` whatever the scale (no underflow).
    ``"binary"``: all ones.
    """
    if kind == "binary":
        return np.ones_like(dist, dtype=np.float32)
    if kind != "adaptive":
        msg = f"unknown edge weighting {kind!r}; use 'adaptive' or 'binary'"
        raise ValueError(msg)
    sig_r = np.maximum(sigma_rows, 1e-8)[:, None]
    sig_c = sig_r if sigma_cols is None else np.maximum(sigma_cols, 1e-8)
    w = np.exp(-(dist.astype(np.float64) ** 2) / (sig_r * sig_c))
    return np.maximum(w, 1e-6).astype(np.float32)


def knn_graph(
    x: np.ndarray,
    n_neighbors: int = 15,
    *,
    weights: str = "adaptive",
    seed: int = 0,
    batch_codes: np.ndarray | None = None,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Symmetric kNN graph of the rows of ``x`` (no self loops).

    ``batch_codes`` (integers ``(n,)``, or ``None``): with more than one batch the neighbours are
    batch-balanced (:class:`BalancedNeighborIndex`: ``n_neighbors // n_batches`` from each batch, at
    least 1); ``None`` or a single batch gives the plain kNN graph.

    Returns
    -------
    ``(adjacency, sigma)``: CSR ``float32`` ``(n, n)`` with at most ``2 n k`` entries, symmetrised
    by the elementwise maximum, and the per-point bandwidth σ (distance to the k-th neighbour),
    needed to weight edges of new points consistently.
    """
    n = x.shape[0]
    if n < 2:
        msg = "a kNN graph needs at least 2 points"
        raise ValueError(msg)
    if batch_codes is not None and np.unique(batch_codes).size > 1:
        idx, dist = BalancedNeighborIndex(x, batch_codes, n_neighbors, seed=seed).self_neighbors()
    else:
        idx, dist = nearest_neighbors(x, n_neighbors, seed=seed)
    sigma = dist[:, -1].astype(np.float32)
    w = edge_weights(dist, sigma, sigma[idx], kind=weights)
    rows = np.repeat(np.arange(n), idx.shape[1])
    directed = sp.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(n, n), dtype=np.float32)
    adj = directed.maximum(directed.T).tocsr()
    adj.setdiag(0)
    adj.eliminate_zeros()
    adj.sort_indices()
    return adj.astype(np.float32), sigma
