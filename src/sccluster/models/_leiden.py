"""Leiden clustering of a kNN graph built by scanpy (pynndescent) on an embedding.

With batch codes the graph is batch-balanced (:class:`sccluster.graph.BalancedNeighborIndex`, the
neighbour rule SiameseClu's graph uses) and weighted as scanpy weights its own (UMAP connectivities).
"""

from __future__ import annotations

import numpy as np

from sccluster._utils import prefer_blocking_numba_threads


def leiden_labels(
    embedding: np.ndarray, seed: int, *, resolution: float = 1.0, n_neighbors: int = 15
) -> np.ndarray:
    """Leiden clusters of a kNN graph (scanpy, pynndescent) built on ``embedding``."""
    return leiden(knn_graph(embedding, seed, n_neighbors), resolution, seed)


def knn_graph(embedding: np.ndarray, seed: int, n_neighbors: int = 15, batch_codes: np.ndarray | None = None):
    """An empty-featured AnnData holding scanpy's kNN graph of ``embedding`` (reusable across resolutions).

    ``batch_codes`` (integers ``(n,)``) with more than one batch: each cell's neighbours are drawn from
    every batch (``n_neighbors // n_batches`` from each, at least 1; :class:`sccluster.graph.BalancedNeighborIndex`)
    and weighted by scanpy's UMAP connectivities, as ``sc.pp.neighbors`` weights its kNN (``n_neighbors``
    counts the cell itself there, so a cell has ``n_neighbors - 1`` others). ``None`` or one batch:
    ``sc.pp.neighbors`` itself.
    """
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(np.zeros((embedding.shape[0], 0), dtype=np.float32))
    tmp.obsm["X_emb"] = np.ascontiguousarray(embedding, dtype=np.float32)
    prefer_blocking_numba_threads()
    if batch_codes is None or np.unique(batch_codes).size < 2:
        sc.pp.neighbors(tmp, n_neighbors=n_neighbors, use_rep="X_emb", random_state=seed)
        return tmp
    _balanced_neighbors(tmp, np.asarray(batch_codes), n_neighbors, seed)
    return tmp


def _balanced_neighbors(tmp, batch_codes: np.ndarray, n_neighbors: int, seed: int) -> None:
    """Write a batch-balanced kNN graph into ``tmp`` where ``sc.pp.neighbors`` writes its own."""
    import scipy.sparse as sp
    from umap.umap_ import fuzzy_simplicial_set

    from sccluster import graph

    x = tmp.obsm["X_emb"]
    n = x.shape[0]
    # scanpy's n_neighbors counts the cell itself; the balanced rule shares out the others
    idx, dist = graph.BalancedNeighborIndex(
        x, batch_codes, max(n_neighbors - 1, 1), seed=seed
    ).self_neighbors()
    idx = np.hstack([np.arange(n)[:, None], idx])  # the cell itself first, as scanpy hands UMAP its kNN
    dist = np.hstack([np.zeros((n, 1), dtype=dist.dtype), dist])
    k = idx.shape[1]
    conn, _, _ = fuzzy_simplicial_set(
        sp.coo_matrix((n, 1)), k, None, None, knn_indices=idx, knn_dists=dist, set_op_mix_ratio=1.0,
        local_connectivity=1.0,
    )  # fmt: skip
    rows = np.repeat(np.arange(n), k - 1)
    distances = sp.csr_matrix((dist[:, 1:].ravel(), (rows, idx[:, 1:].ravel())), shape=(n, n))
    tmp.obsp["connectivities"] = sp.csr_matrix(conn, dtype=np.float32)
    tmp.obsp["distances"] = distances
    tmp.uns["neighbors"] = {
        "connectivities_key": "connectivities", "distances_key": "distances",
        "params": {"n_neighbors": k, "method": "umap", "random_state": seed, "use_rep": "X_emb", "batch_balanced": True},
    }  # fmt: skip


def leiden(graph, resolution: float, seed: int) -> np.ndarray:
    """Leiden communities (igraph, 2 iterations) of the graph held by :func:`knn_graph`, as 0..k-1."""
    import scanpy as sc

    sc.tl.leiden(
        graph, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=seed
    )
    return graph.obs["leiden"].cat.codes.to_numpy().astype(np.int64)
