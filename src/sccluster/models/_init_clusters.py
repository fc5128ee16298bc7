"""Initial clusters on an embedding: k-means when k is known, Leiden when it must be estimated.

Both deep models pretrain an embedding, then call :func:`initial_clusters` to get their starting
centres. Nothing here sees labels.
"""

from __future__ import annotations

import logging

import numpy as np

from .._utils import prefer_blocking_numba_threads

logger = logging.getLogger(__name__)


def kmeans_centers(embedding: np.ndarray, n_clusters: int, seed: int, *, n_init: int = 10, max_cells: int = 200_000) -> np.ndarray:
    """k-means centres ``(K, d)`` of ``embedding`` (fitted on a seeded subsample above ``max_cells``).

    scikit-learn's k-means relocates empty clusters, so every centre is a real, finite point.
    """
    from sklearn.cluster import KMeans

    x = _subsample(embedding, max_cells, seed)
    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit(x)
    return km.cluster_centers_.astype(np.float32)


def leiden_labels(embedding: np.ndarray, seed: int, *, resolution: float = 1.0, n_neighbors: int = 15) -> np.ndarray:
    """Leiden clusters of a kNN graph (scanpy, pynndescent) built on ``embedding``."""
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(np.zeros((embedding.shape[0], 0), dtype=np.float32))
    tmp.obsm["X_emb"] = np.ascontiguousarray(embedding, dtype=np.float32)
    prefer_blocking_numba_threads()
    sc.pp.neighbors(tmp, n_neighbors=n_neighbors, use_rep="X_emb", random_state=seed)
    sc.tl.leiden(tmp, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    return tmp.obs["leiden"].cat.codes.to_numpy().astype(np.int64)


def merge_small_clusters(embedding: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Reassign cells of clusters smaller than ``min_size`` to the nearest large cluster's centroid."""
    labels = labels.copy()
    ids, sizes = np.unique(labels, return_counts=True)
    big = ids[sizes >= min_size]
    if len(big) == 0 or len(big) == len(ids):
        return _relabel(labels)
    centroids = np.stack([embedding[labels == k].mean(axis=0) for k in big])
    small = ~np.isin(labels, big)
    d2 = ((embedding[small, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    labels[small] = big[d2.argmin(axis=1)]
    return _relabel(labels)


def _relabel(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def _subsample(x: np.ndarray, max_cells: int, seed: int) -> np.ndarray:
    if x.shape[0] <= max_cells:
        return x
    idx = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_cells, replace=False))
    return x[idx]


def initial_clusters(
    embedding: np.ndarray,
    n_clusters: int | None,
    seed: int,
    *,
    resolution: float = 1.0,
    min_cluster_frac: float = 0.005,
    max_cells: int = 50_000,
) -> np.ndarray:
    """Initial cluster centres ``(K, d)`` on ``embedding``.

    With ``n_clusters`` given: k-means. With ``n_clusters=None``: Leiden (``resolution``) on a kNN graph
    of at most ``max_cells`` cells (seeded subsample), clusters smaller than ``min_cluster_frac`` of the
    cells merged into their nearest neighbour; the centres are the cluster means, so K is estimated
    without labels.
    """
    if n_clusters is not None:
        return kmeans_centers(embedding, n_clusters, seed)
    x = _subsample(embedding, max_cells, seed)
    labels = leiden_labels(x, seed, resolution=resolution)
    labels = merge_small_clusters(x, labels, max(2, int(np.ceil(min_cluster_frac * x.shape[0]))))
    k = int(labels.max()) + 1
    logger.info("estimated %d clusters without labels (Leiden, resolution %.2f, on %d cells)", k, resolution, x.shape[0])
    return np.stack([x[labels == c].mean(axis=0) for c in range(k)]).astype(np.float32)
