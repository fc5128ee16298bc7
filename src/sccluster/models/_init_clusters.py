"""Initial clusters on an embedding: k-means or Leiden at k when k is known, Leiden when it must be estimated.

Both deep models pretrain an embedding, then call :func:`initial_clusters` to get their starting
centres. With ``resolution="auto"`` the Leiden resolution is chosen per dataset by subsample
stability (:func:`choose_resolution`). With k given, ``init="leiden"`` searches the resolution that
gives k communities (:func:`leiden_k_labels`) instead of running k-means. Nothing here sees labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .._errors import InputError
from .._utils import prefer_blocking_numba_threads
from ._params import check_choice, check_number

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
    return _leiden(_knn_graph(embedding, seed, n_neighbors), resolution, seed)


def _knn_graph(embedding: np.ndarray, seed: int, n_neighbors: int = 15):
    """An empty-featured AnnData holding scanpy's kNN graph of ``embedding`` (reusable across resolutions)."""
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(np.zeros((embedding.shape[0], 0), dtype=np.float32))
    tmp.obsm["X_emb"] = np.ascontiguousarray(embedding, dtype=np.float32)
    prefer_blocking_numba_threads()
    sc.pp.neighbors(tmp, n_neighbors=n_neighbors, use_rep="X_emb", random_state=seed)
    return tmp


def _leiden(graph, resolution: float, seed: int) -> np.ndarray:
    import scanpy as sc

    sc.tl.leiden(
        graph, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=seed
    )
    return graph.obs["leiden"].cat.codes.to_numpy().astype(np.int64)


#: Resolutions searched by :func:`choose_resolution`.
RESOLUTION_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0)


@dataclass
class ResolutionChoice:
    """The outcome of :func:`choose_resolution`.

    ``table`` has one row per resolution of the grid: ``resolution``, ``stability`` (mean ARI
    between the subsamples' partitions on their shared cells), ``stability_sd`` (its standard
    deviation over the pairs) and ``n_clusters`` (median over the subsamples).
    """

    resolution: float
    table: list[dict] = field(default_factory=list)


def choose_resolution(
    embedding: np.ndarray,
    seed: int,
    *,
    grid: tuple[float, ...] = RESOLUTION_GRID,
    n_subsets: int = 8,
    subset_frac: float = 0.8,
    n_neighbors: int = 15,
) -> ResolutionChoice:
    """Pick a Leiden resolution for ``embedding`` by subsample stability (no labels).

    ``n_subsets`` seeded subsamples of ``subset_frac`` of the cells each get their own kNN graph
    and Leiden partitions at every resolution of ``grid``. A resolution's stability is the mean
    adjusted Rand index between the partitions of two subsamples on the cells they share, over all
    pairs. Resolutions whose partitions have fewer than two clusters (median over subsamples) are
    not eligible. The choice is the highest eligible resolution whose stability is at least the
    lower end of the best one's 95 % interval, ``best - 1.96 * sd_best / sqrt(n_subsets)``: the
    finest partition that is as reproducible as the most reproducible one, as chooseR does
    (Patterson-Cross et al., 2021) with co-clustering silhouettes. Too few cells for the graphs
    (``subset_frac * n <= 3 * n_neighbors``), or no eligible resolution: ``1.0``.
    """
    from sklearn.metrics import adjusted_rand_score

    check_number("n_subsets", n_subsets, 2, integer=True)
    check_number("subset_frac", subset_frac, 0.0, 1.0, lo_open=True)
    n = embedding.shape[0]
    m = int(round(subset_frac * n))
    if m <= 3 * n_neighbors:
        logger.info("too few cells (%d) to choose the resolution by stability; using 1.0", n)
        return ResolutionChoice(1.0)
    rng = np.random.default_rng(seed)
    subsets = [np.sort(rng.choice(n, m, replace=False)) for _ in range(n_subsets)]
    parts = np.empty((n_subsets, len(grid), m), dtype=np.int32)  # each subsample's labels of its own cells
    for b, idx in enumerate(subsets):
        sub_seed = (seed + b) % 2**32  # scanpy and pynndescent take seeds below 2**32
        graph = _knn_graph(embedding[idx], sub_seed, n_neighbors)
        for j, res in enumerate(grid):
            parts[b, j] = _leiden(graph, res, sub_seed)
    pairs = []
    for a in range(n_subsets):
        for b in range(a + 1, n_subsets):
            _, in_a, in_b = np.intersect1d(subsets[a], subsets[b], assume_unique=True, return_indices=True)
            pairs.append((a, b, in_a, in_b))
    table = []
    for j, res in enumerate(grid):
        scores = [adjusted_rand_score(parts[a, j, in_a], parts[b, j, in_b]) for a, b, in_a, in_b in pairs]
        k = float(np.median([parts[b, j].max() + 1 for b in range(n_subsets)]))
        table.append({"resolution": res, "stability": float(np.mean(scores)),
                      "stability_sd": float(np.std(scores)), "n_clusters": k})  # fmt: skip
    eligible = [row for row in table if row["n_clusters"] >= 2]
    if not eligible:
        logger.info("no resolution up to %.2f gives two clusters; using 1.0", grid[-1])
        return ResolutionChoice(1.0, table)
    best = max(eligible, key=lambda row: row["stability"])
    floor = best["stability"] - 1.96 * best["stability_sd"] / np.sqrt(n_subsets)
    chosen = max(row["resolution"] for row in eligible if row["stability"] >= floor)
    logger.info(
        "resolution %.2f chosen by stability (most stable %.2f at %.3f; floor %.3f)",
        chosen, best["resolution"], best["stability"], floor,
    )  # fmt: skip
    return ResolutionChoice(float(chosen), table)


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
    embedding: np.ndarray, n_clusters: int, seed: int, *, min_size: int = 2, n_neighbors: int = 15, max_iter: int = 24
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
    graph = _knn_graph(embedding, seed, n_neighbors)

    def partition(res: float) -> np.ndarray:
        return merge_small_clusters(embedding, _leiden(graph, res, seed), min_size)

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


def _subsample(x: np.ndarray, max_cells: int, seed: int) -> np.ndarray:
    if x.shape[0] <= max_cells:
        return x
    idx = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_cells, replace=False))
    return x[idx]


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
    resolution: float | str = 1.0,
    init: str = "kmeans",
    min_cluster_frac: float = 0.005,
    max_cells: int = 50_000,
    max_stability_cells: int = 20_000,
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
            x = _subsample(embedding, max_cells, seed)
            labels = leiden_k_labels(x, n_clusters, seed, min_size=_min_size(x.shape[0], min_cluster_frac))
            if labels is not None:
                return InitialClusters(_means(x, labels))
            logger.info("no Leiden resolution gives %d clusters on this embedding; starting from k-means", n_clusters)
        return InitialClusters(kmeans_centers(embedding, n_clusters, seed))
    table: list[dict] = []
    if resolution == "auto":
        x = _subsample(embedding, max_stability_cells, seed)
        choice = choose_resolution(x, seed)
        resolution, table = choice.resolution, choice.table
    else:
        x = _subsample(embedding, max_cells, seed)
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


#: Ways to find the starting centres when k is given.
INITS = ("kmeans", "leiden")


def check_resolution(value) -> None:
    """A Leiden resolution: a positive number, or ``"auto"`` (chosen by subsample stability)."""
    if isinstance(value, str) and value == "auto":
        return
    try:
        check_number("resolution", value, 0.0, lo_open=True)
    except InputError:
        msg = f"resolution must be a positive number or 'auto', got {value!r}"
        raise InputError(msg) from None
