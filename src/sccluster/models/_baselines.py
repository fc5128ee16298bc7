"""Baseline methods behind the model surface: scanpy's Leiden pipeline and k-means, both on a PCA.

Neither baseline can assign new cells or be saved; they cluster the cells they are fitted on.
``LeidenBaseline(batch_key=...)`` corrects for batches (per-batch scaling before the PCA, a batch-balanced
kNN graph); k-means has no batch correction and takes no ``batch_key``.
"""

from __future__ import annotations

import logging

import numpy as np

from sccluster._errors import InputError
from sccluster.data import BatchCodes, read_batches
from sccluster.metrics import silhouette
from sccluster.pp import pca_embedding

from ._base import ClusterModel
from ._init_clusters import check_resolution, subsample_index, subsample_rows
from ._leiden import knn_graph, leiden
from ._params import check_choice, check_number
from ._pca_embedder import PCAEmbedder
from ._stability import MAX_STABILITY_CELLS, choose_k, choose_resolution

logger = logging.getLogger(__name__)

#: Above this many cells :class:`KMeansBaseline` uses scikit-learn's ``MiniBatchKMeans``.
MINIBATCH_ABOVE = 200_000
#: Cells used to choose k by the silhouette when ``KMeansBaseline(n_clusters=None)``.
K_SEARCH_CELLS = 5_000
#: Candidate numbers of clusters tried when ``KMeansBaseline(n_clusters=None)``.
K_SEARCH_RANGE = range(2, 13)
#: k-means restarts per candidate k during that search.
K_SEARCH_N_INIT = 3
#: Ways :class:`KMeansBaseline` chooses k when ``n_clusters=None``.
K_SELECTIONS = ("silhouette", "stability")
#: Bisection steps of :class:`LeidenBaseline` when a number of clusters is requested.
MAX_BISECTIONS = 20


def pca_of(adata, *, layer: str | None, n_pcs: int, n_top_genes: int, seed: int) -> np.ndarray:
    """``obsm["X_pca"][:, :n_pcs]`` when it has enough columns and no ``layer`` is named.

    Otherwise a streamed PCA of the raw counts (:func:`sccluster.pp.pca_embedding`).
    """
    check_number("n_pcs", n_pcs, 1, integer=True)
    if layer is None and "X_pca" in adata.obsm and adata.obsm["X_pca"].shape[1] >= n_pcs:
        logger.info("using the first %d columns of obsm['X_pca']", n_pcs)
        # a copy: the model's embedding_ (and tl.cluster's obsm output) must not alias the user's X_pca
        return np.array(adata.obsm["X_pca"][:, :n_pcs], dtype=np.float32, order="C", copy=True)
    return pca_embedding(adata, n_comps=int(n_pcs), n_top_genes=n_top_genes, layer=layer, random_state=seed)


class LeidenBaseline(ClusterModel):
    """The standard scanpy pipeline: PCA → kNN graph (``sc.pp.neighbors``) → Leiden (igraph).

    With ``batch_key`` the PCA is of per-batch z-scored genes and the kNN graph batch-balanced, so that
    batches do not become clusters (see ``batch_key``).

    Parameters
    ----------
    n_clusters
        ``None``: Leiden at ``resolution``. An integer: the resolution is searched by bisection
        (label-free) until Leiden gives exactly that many clusters; when no resolution does, the
        closest count found is kept. The resolution used is logged and stored in ``resolution_``.
    resolution
        Leiden resolution, or ``"auto"`` (default): chosen per dataset by subsample stability on the
        PCA (:func:`sccluster.models.choose_resolution`, on a seeded subsample of at most 20,000
        cells; no labels), the rule the deep models use on their own embeddings. The stability of
        every resolution tried is kept in ``resolution_table_``. With ``n_clusters`` given it is the
        starting point of the search (``"auto"``: 1.0).
    n_neighbors
        Neighbours of the kNN graph.
    n_pcs
        Principal components used (from ``obsm["X_pca"]`` when it has enough columns, otherwise
        computed with :func:`sccluster.pp.pca_embedding`).
    n_top_genes
        Highly variable genes for the PCA when it must be computed.
    batch_key
        Column of ``obs`` naming each cell's batch (donor, sample, lane, condition), or ``None`` (default:
        the pipeline above, results unchanged). Every cell needs a value and every batch at least 2 cells;
        one batch is allowed (with a warning) but has no effect. Given: the PCA is computed (never taken
        from ``obsm["X_pca"]``) on the highly variable genes z-scored with each batch's own statistics
        (:class:`PCAEmbedder`), and each cell's neighbours in the kNN graph are drawn from every
        batch: its ``n_neighbors - 1`` others (scanpy counts the cell itself) shared out as
        ``(n_neighbors - 1) // n_batches`` nearest cells in each batch, at least 1, weighted by scanpy's
        UMAP connectivities (in the spirit of BBKNN; :class:`sccluster.graph.BalancedNeighborIndex`). The
        resolution search and ``resolution="auto"`` use balanced graphs too. Labels are never involved.
    random_state
        Seed of the PCA, the neighbour search, the subsamples and Leiden.
    """

    name = "leiden"

    def __init__(
        self,
        n_clusters: int | None = None,
        *,
        resolution: float | str = "auto",
        n_neighbors: int = 15,
        n_pcs: int = 50,
        n_top_genes: int = 2000,
        batch_key: str | None = None,
        random_state: int | None = 0,
    ) -> None:
        super().__init__(n_clusters, random_state=random_state)
        self.resolution = resolution
        self.n_neighbors = n_neighbors
        self.n_pcs = n_pcs
        self.n_top_genes = n_top_genes
        self.batch_key = batch_key

    def validate_params(self) -> None:
        """Check the hyperparameters as set now, without data; :class:`InputError` names a bad one and its range."""
        check_resolution(self.resolution)
        check_number("n_neighbors", self.n_neighbors, 2, integer=True)
        check_number("n_pcs", self.n_pcs, 1, integer=True)
        check_number("n_top_genes", self.n_top_genes, 1, integer=True)

    def _fit(self, adata, *, layer: str | None) -> None:
        self.validate_params()
        batches = None if self.batch_key is None else read_batches(adata, self.batch_key)  # before any work
        self.batches_ = None if batches is None else list(batches.categories)
        codes = None if batches is None else batches.codes
        emb = self._embed(adata, layer=layer, batches=batches)
        self.embedding_ = emb
        self.resolution_table_: list[dict] = []
        n_obs = emb.shape[0]
        if self.n_clusters == n_obs:  # every cell its own cluster: no graph needed
            self.labels_ = np.arange(n_obs)
            self.resolution_ = float("nan")
            return
        n_neighbors = int(min(self.n_neighbors, max(n_obs - 1, 2)))
        graph = knn_graph(emb, self.seed_, n_neighbors, batch_codes=codes)
        cache: dict[float, np.ndarray] = {}

        def run(res: float) -> np.ndarray:
            if res not in cache:
                cache[res] = leiden(graph, res, self.seed_)
            return cache[res]

        auto = self.resolution == "auto"
        if self.n_clusters is not None:
            res = self._search_resolution(run, int(self.n_clusters), 1.0 if auto else float(self.resolution))
        elif auto:
            sub = subsample_index(n_obs, MAX_STABILITY_CELLS, self.seed_)  # the rows subsample_rows takes
            choice = choose_resolution(emb[sub], self.seed_, n_neighbors=n_neighbors,
                                       batch_codes=None if codes is None else codes[sub])  # fmt: skip
            res, self.resolution_table_ = choice.resolution, choice.table
        else:
            res = float(self.resolution)
        self.labels_ = run(res)
        self.resolution_ = res
        logger.info("leiden: resolution %.4g gives %d clusters", res, len(np.unique(self.labels_)))

    def _embed(self, adata, *, layer: str | None, batches: BatchCodes | None) -> np.ndarray:
        """The embedding the kNN graph is built on: the PCA (per-batch scaled with ``batch_key``)."""
        if batches is None:
            return pca_of(adata, layer=layer, n_pcs=self.n_pcs, n_top_genes=self.n_top_genes, seed=self.seed_)
        return (
            PCAEmbedder(n_pcs=self.n_pcs, n_top_genes=self.n_top_genes, random_state=self.seed_)
            .fit_batches(adata, batches, layer=layer)
            .embedding_
        )  # per-batch z-scored HVGs, never the pooled obsm["X_pca"]

    @staticmethod
    def _search_resolution(run, target: int, start: float) -> float:
        """Bisection on the resolution for ``target`` clusters; the closest count wins otherwise."""

        def k_of(res: float) -> int:
            return len(np.unique(run(res)))

        best = (abs(k_of(start) - target), start)
        lo, hi = 0.0, start
        if k_of(start) < target:  # grow the upper bound until it gives enough clusters
            lo, hi = start, start * 2
            while k_of(hi) < target and hi < 1e4:
                best = min(best, (abs(k_of(hi) - target), hi))
                lo, hi = hi, hi * 2
        best = min(best, (abs(k_of(hi) - target), hi))
        for _ in range(MAX_BISECTIONS):
            if best[0] == 0:
                break
            mid = (lo + hi) / 2
            k = k_of(mid)
            best = min(best, (abs(k - target), mid))
            if k < target:
                lo = mid
            elif k > target:
                hi = mid
        if best[0] != 0:
            logger.warning(
                "leiden: no resolution gives exactly %d clusters; keeping %d", target, k_of(best[1])
            )
        return best[1]


class KMeansBaseline(ClusterModel):
    """k-means (scikit-learn) on a PCA of the log-normalised highly variable genes.

    Above ``MINIBATCH_ABOVE`` (200,000) cells ``MiniBatchKMeans`` (batches of 4096) replaces
    ``KMeans``. With ``n_clusters=None`` the number of clusters is chosen without labels, on a seeded
    subsample of at most 5,000 cells, by ``k_selection``.

    Parameters
    ----------
    n_clusters
        Number of clusters, or ``None`` to choose it without labels (``k_selection``).
    k_selection
        How k is chosen when ``n_clusters=None``: ``"silhouette"`` (default): k-means (3 restarts) for
        every k in 2..12, and the k with the highest silhouette wins (ties go to the smaller k);
        ``"stability"``: the largest k in 2..30 whose k-means partitions are as reproducible across
        subsamples of the cells as those of the most reproducible k (:func:`sccluster.models.choose_k`,
        the rule of ``LeidenBaseline(resolution="auto")``). The stability table is kept in
        ``k_table_``.
    n_pcs
        Principal components used (from ``obsm["X_pca"]`` when it has enough columns).
    n_top_genes
        Highly variable genes for the PCA when it must be computed.
    n_init
        k-means restarts.
    random_state
        Seed of the PCA, the subsample and k-means.
    """

    name = "kmeans"

    # learned in fit
    k_table_: list[dict]

    def __init__(
        self,
        n_clusters: int | None = None,
        *,
        k_selection: str = "silhouette",
        n_pcs: int = 50,
        n_top_genes: int = 2000,
        n_init: int = 10,
        random_state: int | None = 0,
    ) -> None:
        super().__init__(n_clusters, random_state=random_state)
        self.k_selection = k_selection
        self.n_pcs = n_pcs
        self.n_top_genes = n_top_genes
        self.n_init = n_init

    def _kmeans(self, k: int, n_obs: int, n_init: int | None = None):
        from sklearn.cluster import KMeans, MiniBatchKMeans

        n_init = self.n_init if n_init is None else n_init
        if n_obs > MINIBATCH_ABOVE:
            return MiniBatchKMeans(n_clusters=k, n_init=n_init, batch_size=4096, random_state=self.seed_)
        return KMeans(n_clusters=k, n_init=n_init, random_state=self.seed_)

    def _choose_k(self, emb: np.ndarray) -> int:
        sub = subsample_rows(emb, K_SEARCH_CELLS, self.seed_)
        if self.k_selection == "stability":
            choice = choose_k(sub, self.seed_, n_init=K_SEARCH_N_INIT)
            self.k_table_ = choice.table
            return choice.n_clusters
        scores = {}
        for k in K_SEARCH_RANGE:
            if k >= sub.shape[0]:
                break
            labels = self._kmeans(k, sub.shape[0], min(self.n_init, K_SEARCH_N_INIT)).fit_predict(sub)
            scores[k] = silhouette(sub, labels, random_state=self.seed_)
        scores = {k: s for k, s in scores.items() if np.isfinite(s)}
        if not scores:
            msg = "too few distinct cells to choose the number of clusters; pass n_clusters"
            raise InputError(msg)
        best = max(scores, key=lambda k: (scores[k], -k))
        logger.info("kmeans: chose k=%d by the silhouette (%.3f)", best, scores[best])
        return best

    def validate_params(self) -> None:
        """Check the hyperparameters as set now, without data; :class:`InputError` names a bad one and its range."""
        check_number("n_init", self.n_init, 1, integer=True)
        check_choice("k_selection", self.k_selection, K_SELECTIONS)
        check_number("n_pcs", self.n_pcs, 1, integer=True)
        check_number("n_top_genes", self.n_top_genes, 1, integer=True)

    def _fit(self, adata, *, layer: str | None) -> None:
        self.validate_params()
        self.k_table_ = []
        emb = pca_of(adata, layer=layer, n_pcs=self.n_pcs, n_top_genes=self.n_top_genes, seed=self.seed_)
        self.embedding_ = emb
        k = self._choose_k(emb) if self.n_clusters is None else int(self.n_clusters)
        self.labels_ = self._kmeans(k, emb.shape[0]).fit_predict(emb)
