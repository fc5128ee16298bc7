"""Initial clusters on an embedding: k-means or Leiden at k when k is known, Leiden when it must be estimated.

Both deep models pretrain an embedding, then call :func:`initial_clusters` to get their starting
centres. With ``resolution="auto"`` the Leiden resolution is chosen per dataset by subsample
stability (:func:`choose_resolution`). With k given, ``init="leiden"`` searches the resolution that
gives k communities (:func:`leiden_k_labels`) instead of running k-means. Nothing here sees labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated, Literal, get_args

import numpy as np

from sccluster._errors import InputError

from ._leiden import knn_graph, leiden, leiden_labels
from ._params import check_choice, check_number
from ._stability import MAX_STABILITY_CELLS, choose_resolution

logger = logging.getLogger(__name__)

#: Ways to find the starting centres when k is given.
Init = Literal["kmeans", "leiden"]
INITS: tuple[str, ...] = get_args(Init)


def kmeans_centers(
    embedding: np.ndarray, n_clusters: int, seed: int, *, n_init: int = 10, max_cells: int = 200_000
) -> np.ndarray:
    """k-means centres ``(K, d)`` of ``embedding`` (fitted on a seeded subsample above ``max_cells``).

    scikit-learn's k-means relocates empty clusters, so every centre is a real, finite point.
    """
    from sklearn.cluster import KMeans

    x = subsample_rows(embedding, max_cells, seed)
    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit(x)
    return km.cluster_centers_.astype(np.float32)


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


def leiden_k_labels(
    embedding: np.ndarray,
    n_clusters: int,
    seed: int,
    *,
    min_size: int = 2,
    n_neighbors: int = 15,
    max_iter: int = 24,
) -> np.ndarray | None:
    """Leiden partition of ``embedding`` into exactly ``n_clusters`` communities, or ``None``.

    One kNN graph; the resolution is searched by bisection on a log scale (doubling from 1.0 until
    there are enough communities, at most 64), counting communities after clusters smaller than
    ``min_size`` are merged into their nearest neighbour (:func:`merge_small_clusters`). When no
    resolution gives exactly ``n_clusters``, the partition with the fewest communities above it is
    reduced by merging its smallest community into the one with the nearest centroid, repeatedly.
    ``None`` when the graph cannot be built (too few cells) or no resolution up to 64 gives
    ``n_clusters`` communities; the caller then falls back to k-means.
    """
    n = embedding.shape[0]
    if n_clusters < 2 or n <= 2 * n_neighbors:
        return None
    graph = knn_graph(embedding, seed, n_neighbors)

    def partition(res: float) -> np.ndarray:
        return merge_small_clusters(embedding, leiden(graph, res, seed), min_size)

    lo, hi = 0.0, 1.0
    above = partition(hi)
    while above.max() + 1 < n_clusters:
        if hi >= 64.0:
            return None
        lo, hi = hi, 2.0 * hi
        above = partition(hi)
    for _ in range(max_iter):
        if above.max() + 1 == n_clusters:
            break
        mid = np.sqrt(lo * hi) if lo > 0 else hi / 4.0
        labels = partition(mid)
        k = labels.max() + 1
        if k < n_clusters:
            lo = mid
        else:
            hi, above = mid, labels
    return _merge_to(embedding, above, n_clusters)


def _merge_to(embedding: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Merge the smallest cluster into the one with the nearest centroid until ``n_clusters`` remain."""
    labels = labels.copy()
    while labels.max() + 1 > n_clusters:
        sizes = np.bincount(labels)
        centroids = _means(embedding, labels)
        small = int(sizes.argmin())
        d2 = ((centroids - centroids[small]) ** 2).sum(axis=1)
        d2[small] = np.inf
        labels[labels == small] = int(d2.argmin())
        labels = _relabel(labels)
    return labels


def _relabel(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def subsample_index(n_obs: int, max_cells: int, seed: int) -> np.ndarray:
    """Sorted positions of the rows :func:`subsample_rows` keeps: all ``n_obs``, or a seeded ``max_cells``."""
    if n_obs <= max_cells:
        return np.arange(n_obs)
    return np.sort(np.random.default_rng(seed).choice(n_obs, max_cells, replace=False))


def subsample_rows(x: np.ndarray, max_cells: int, seed: int) -> np.ndarray:
    """``x`` itself, or a seeded sample of ``max_cells`` of its rows (in their order) when it has more."""
    if x.shape[0] <= max_cells:
        return x
    return x[subsample_index(x.shape[0], max_cells, seed)]


@dataclass
class InitialClusters:
    """Starting centres ``(K, d)`` and, when k was estimated, the Leiden resolution used."""

    centers: np.ndarray
    resolution: float | None = None
    resolution_table: list[dict] = field(default_factory=list)


def initial_clusters(
    embedding: np.ndarray,
    n_clusters: int | None,
    seed: int,
    *,
    resolution: float | Literal["auto"] = 1.0,
    init: str = "kmeans",
    min_cluster_frac: float = 0.005,
    max_cells: int = 50_000,
    max_stability_cells: int = MAX_STABILITY_CELLS,
) -> InitialClusters:
    """Initial cluster centres on ``embedding``.

    With ``n_clusters`` given: k-means (``init="kmeans"``), or (``init="leiden"``) the means of a Leiden
    partition with ``n_clusters`` communities on a kNN graph of at most ``max_cells`` cells (seeded
    subsample; :func:`leiden_k_labels`, small clusters merged as below), falling back to k-means when
    no resolution gives that many. With ``n_clusters=None``: Leiden (``resolution``) on a kNN graph
    of at most ``max_cells`` cells (seeded subsample), clusters smaller than ``min_cluster_frac`` of the
    cells merged into their nearest neighbour; the centres are the cluster means, so K is estimated
    without labels. ``resolution="auto"`` chooses it with :func:`choose_resolution` on at most
    ``max_stability_cells`` cells, which then also carry the final partition.
    """
    check_choice("init", init, INITS)
    if n_clusters is not None:
        if init == "leiden":
            x = subsample_rows(embedding, max_cells, seed)
            labels = leiden_k_labels(x, n_clusters, seed, min_size=_min_size(x.shape[0], min_cluster_frac))
            if labels is not None:
                return InitialClusters(_means(x, labels))
            logger.info(
                "no Leiden resolution gives %d clusters on this embedding; starting from k-means", n_clusters
            )
        return InitialClusters(kmeans_centers(embedding, n_clusters, seed))
    table: list[dict] = []
    if resolution == "auto":
        x = subsample_rows(embedding, max_stability_cells, seed)
        choice = choose_resolution(x, seed)
        resolution, table = choice.resolution, choice.table
    else:
        x = subsample_rows(embedding, max_cells, seed)
    labels = leiden_labels(x, seed, resolution=resolution)
    labels = merge_small_clusters(x, labels, _min_size(x.shape[0], min_cluster_frac))
    k = int(labels.max()) + 1
    logger.info("estimated %d clusters without labels (Leiden, resolution %.2f, on %d cells)",
                k, resolution, x.shape[0])  # fmt: skip
    return InitialClusters(_means(x, labels), float(resolution), table)


def _min_size(n_cells: int, frac: float) -> int:
    """Smallest cluster kept by a Leiden start: ``frac`` of the cells, at least 2."""
    return max(2, int(np.ceil(frac * n_cells)))


def _means(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.stack([x[labels == c].mean(axis=0) for c in range(int(labels.max()) + 1)]).astype(np.float32)


def check_resolution(value, name: str = "resolution") -> None:
    """A Leiden resolution: a positive number, or ``"auto"`` (chosen by subsample stability)."""
    if isinstance(value, str) and value == "auto":
        return
    try:
        check_number(name, value, 0.0, lo_open=True)
    except InputError:
        msg = f"{name} must be a positive number or 'auto', got {value!r}"
        raise InputError(msg) from None


def _resolution_constraint(name: str, value) -> None:
    check_resolution(value, name)


#: Type of a ``resolution`` hyperparameter: a positive number or ``"auto"`` (see :mod:`._config`).
RESOLUTION = Annotated[float | Literal["auto"], _resolution_constraint]
