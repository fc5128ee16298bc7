"""Leiden clustering of a kNN graph built by scanpy (pynndescent) on an embedding."""

from __future__ import annotations

import numpy as np

from .._utils import prefer_blocking_numba_threads


def leiden_labels(embedding: np.ndarray, seed: int, *, resolution: float = 1.0, n_neighbors: int = 15) -> np.ndarray:
    """Leiden clusters of a kNN graph (scanpy, pynndescent) built on ``embedding``."""
    return leiden(knn_graph(embedding, seed, n_neighbors), resolution, seed)


def knn_graph(embedding: np.ndarray, seed: int, n_neighbors: int = 15):
    """An empty-featured AnnData holding scanpy's kNN graph of ``embedding`` (reusable across resolutions)."""
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(np.zeros((embedding.shape[0], 0), dtype=np.float32))
    tmp.obsm["X_emb"] = np.ascontiguousarray(embedding, dtype=np.float32)
    prefer_blocking_numba_threads()
    sc.pp.neighbors(tmp, n_neighbors=n_neighbors, use_rep="X_emb", random_state=seed)
    return tmp


def leiden(graph, resolution: float, seed: int) -> np.ndarray:
    """Leiden communities (igraph, 2 iterations) of the graph held by :func:`knn_graph`, as 0..k-1."""
    import scanpy as sc

    sc.tl.leiden(
        graph, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=seed
    )
    return graph.obs["leiden"].cat.codes.to_numpy().astype(np.int64)
