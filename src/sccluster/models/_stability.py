"""Label-free choice of a clustering's granularity by subsample stability.

Seeded subsamples of the cells are clustered at every value of a grid (a Leiden resolution, or a
number of k-means clusters). A value's stability is the mean adjusted Rand index between the
partitions of two subsamples on the cells they share, over all pairs of subsamples. The choice is the
finest value that is as reproducible as the most reproducible one: the highest eligible value whose
stability reaches the lower end of the best one's 95 % interval, ``best - 1.96 * sd_best /
sqrt(n_subsets)`` (chooseR, Patterson-Cross et al. 2021, does the same with co-clustering
silhouettes). Nothing here sees labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sccluster._utils import progress

from ._leiden import knn_graph, leiden
from ._params import check_number

logger = logging.getLogger(__name__)

#: Resolutions searched first by :func:`choose_resolution`.
RESOLUTION_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0)
#: The grid is extended down to this resolution at most (halving) when the choice sits on its low end.
MIN_RESOLUTION = 0.01
#: Most cells (a seeded subsample) the stability of a choice is measured on.
MAX_STABILITY_CELLS = 20_000
#: Numbers of clusters searched by :func:`choose_k`.
K_GRID = tuple(range(2, 31))


@dataclass
class ResolutionChoice:
    """The outcome of :func:`choose_resolution`.

    ``table`` has one row per resolution tried, in increasing order: ``resolution``, ``stability``
    (mean ARI between the subsamples' partitions on their shared cells), ``stability_sd`` (its
    standard deviation over the pairs) and ``n_clusters`` (median over the subsamples).
    """

    resolution: float
    table: list[dict] = field(default_factory=list)


@dataclass
class KChoice:
    """The outcome of :func:`choose_k`.

    The number of clusters and one row per ``k`` tried (``k``, ``stability``, ``stability_sd`` and
    ``n_clusters``, the median number of non-empty clusters).
    """

    n_clusters: int
    table: list[dict] = field(default_factory=list)


class SubsampleStability:
    """Partitions of ``n_subsets`` seeded subsamples at grid values, and their pairwise agreement.

    ``partition(b, idx, value)`` clusters the cells ``idx`` of subsample ``b`` at ``value`` and
    returns one label per cell of ``idx``; each (subsample, value) is clustered once.
    """

    def __init__(
        self,
        n_obs: int,
        seed: int,
        partition: Callable[[int, np.ndarray, float], np.ndarray],
        *,
        n_subsets: int = 8,
        subset_frac: float = 0.8,
    ) -> None:
        check_number("n_subsets", n_subsets, 2, integer=True)
        check_number("subset_frac", subset_frac, 0.0, 1.0, lo_open=True)
        rng = np.random.default_rng(seed)
        self.size = int(round(subset_frac * n_obs))
        self.subsets = [np.sort(rng.choice(n_obs, self.size, replace=False)) for _ in range(n_subsets)]
        self.partition = partition
        self.pairs = []
        for a in range(n_subsets):
            for b in range(a + 1, n_subsets):
                _, in_a, in_b = np.intersect1d(
                    self.subsets[a], self.subsets[b], assume_unique=True, return_indices=True
                )
                self.pairs.append((a, b, in_a, in_b))
        self.rows: dict[float, dict] = {}

    def evaluate(self, value: float, key: str) -> dict:
        """The table row of ``value`` (``key``: its column name), computed on first use."""
        from sklearn.metrics import adjusted_rand_score

        if value not in self.rows:
            parts = [self.partition(b, idx, value) for b, idx in enumerate(self.subsets)]
            scores = [adjusted_rand_score(parts[a][ia], parts[b][ib]) for a, b, ia, ib in self.pairs]
            k = float(np.median([len(np.unique(p)) for p in parts]))
            self.rows[value] = {key: value, "stability": float(np.mean(scores)),
                                "stability_sd": float(np.std(scores)), "n_clusters": k}  # fmt: skip
        return self.rows[value]

    def table(self) -> list[dict]:
        """Every row computed so far, by increasing value."""
        return [self.rows[v] for v in sorted(self.rows)]

    def finest_stable(self, values: Sequence[float]) -> float | None:
        """The highest of ``values`` whose stability reaches the best one's floor.

        Only values whose partitions have at least two clusters (median over subsamples) are eligible;
        ``None`` when there are none.
        """
        eligible = [self.rows[v] for v in values if self.rows[v]["n_clusters"] >= 2]
        if not eligible:
            return None
        best = max(eligible, key=lambda row: row["stability"])
        floor = best["stability"] - 1.96 * best["stability_sd"] / np.sqrt(len(self.subsets))
        return max(
            v for v in values if self.rows[v]["n_clusters"] >= 2 and self.rows[v]["stability"] >= floor
        )


def choose_resolution(
    embedding: np.ndarray,
    seed: int,
    *,
    grid: tuple[float, ...] = RESOLUTION_GRID,
    n_subsets: int = 8,
    subset_frac: float = 0.8,
    n_neighbors: int = 15,
    extend: bool = True,
    batch_codes: np.ndarray | None = None,
) -> ResolutionChoice:
    """Pick a Leiden resolution for ``embedding`` by subsample stability (no labels).

    Each of ``n_subsets`` seeded subsamples of ``subset_frac`` of the cells gets its own kNN graph
    (scanpy, ``n_neighbors``) and Leiden partitions at every resolution of ``grid``; the choice is the
    finest resolution as reproducible as the most reproducible one (module docstring). Resolutions
    whose partitions have fewer than two clusters are not eligible. With ``extend`` (default), while
    the choice is the lowest resolution tried, the grid is extended below by halving that resolution,
    down to :data:`MIN_RESOLUTION` (0.01). It is not extended above: at high resolutions Leiden cuts
    round groups into many small chunks whose agreement can rise again, so an upward search runs off
    to hundreds of clusters. Too few cells for the graphs (``subset_frac * n <= 3 * n_neighbors``),
    or no eligible resolution: ``1.0``. ``batch_codes`` (integers ``(n,)``): each subsample's graph is
    batch-balanced (:func:`sccluster.models._leiden.knn_graph`).
    """
    n = embedding.shape[0]
    graphs: dict[int, object] = {}

    def partition(b: int, idx: np.ndarray, res: float) -> np.ndarray:
        sub_seed = (seed + b) % 2**32  # scanpy and pynndescent take seeds below 2**32
        if b not in graphs:
            codes = None if batch_codes is None else batch_codes[idx]
            graphs[b] = knn_graph(embedding[idx], sub_seed, n_neighbors, batch_codes=codes)
        return leiden(graphs[b], res, sub_seed)

    stab = SubsampleStability(n, seed, partition, n_subsets=n_subsets, subset_frac=subset_frac)
    if stab.size <= 3 * n_neighbors:
        logger.info("too few cells (%d) to choose the resolution by stability; using 1.0", n)
        return ResolutionChoice(1.0)
    values = sorted(grid)
    logger.info(
        "choosing the Leiden resolution by subsample stability: %d subsamples of %d cells, %d resolutions",
        n_subsets, stab.size, len(values),
    )  # fmt: skip
    for res in progress(values, desc="resolution search", unit="resolution", leave=False):
        stab.evaluate(res, "resolution")
    chosen = stab.finest_stable(values)
    while extend and chosen == values[0] and values[0] / 2 >= MIN_RESOLUTION:
        values.insert(0, values[0] / 2)
        stab.evaluate(values[0], "resolution")
        chosen = stab.finest_stable(values)
    if chosen is None:
        logger.info("no resolution up to %.2f gives two clusters; using 1.0", values[-1])
        return ResolutionChoice(1.0, stab.table())
    logger.info(
        "resolution %.3g chosen by subsample stability (grid %.3g-%.3g)", chosen, values[0], values[-1]
    )
    return ResolutionChoice(float(chosen), stab.table())


def choose_k(
    embedding: np.ndarray,
    seed: int,
    *,
    grid: tuple[int, ...] = K_GRID,
    n_subsets: int = 8,
    subset_frac: float = 0.8,
    n_init: int = 3,
) -> KChoice:
    """Pick the number of k-means clusters of ``embedding`` by subsample stability (no labels).

    As :func:`choose_resolution`, with k-means (``n_init`` restarts, seeded) in place of Leiden: the
    largest ``k`` of ``grid`` (2-30) whose partitions are as reproducible across subsamples as those
    of the most reproducible ``k``. Values of ``k`` above a tenth of the subsample size are skipped.
    """
    from sklearn.cluster import KMeans

    def partition(b: int, idx: np.ndarray, k: float) -> np.ndarray:
        km = KMeans(n_clusters=int(k), n_init=n_init, random_state=(seed + b) % 2**32)
        return km.fit_predict(embedding[idx])

    stab = SubsampleStability(
        embedding.shape[0], seed, partition, n_subsets=n_subsets, subset_frac=subset_frac
    )
    values = [k for k in sorted(grid) if 2 <= k <= stab.size // 10]
    for k in progress(values, desc="k search", unit="k", leave=False):
        stab.evaluate(k, "k")
    chosen = stab.finest_stable(values) if values else None
    if chosen is None:
        return KChoice(2, stab.table())
    logger.info("kmeans: k=%d chosen by subsample stability", chosen)
    return KChoice(int(chosen), stab.table())
