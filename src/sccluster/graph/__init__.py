"""Sparse cell graphs: kNN, normalisation, edge dropping, personalised PageRank (numpy/scipy only).

Nothing here builds a cells x cells dense matrix: graphs are CSR with about ``n * k`` entries and
diffusion is a fixed number of sparse matrix-times-features products.
"""

from ._knn import (
    BalancedNeighborIndex,
    NeighborIndex,
    edge_weights,
    knn_graph,
    nearest_neighbors,
    per_batch_neighbors,
)
from ._ops import drop_edges, graph_degrees, normalize_adjacency, ppr_extend, ppr_propagate

__all__ = [
    "BalancedNeighborIndex",
    "NeighborIndex",
    "drop_edges",
    "edge_weights",
    "graph_degrees",
    "knn_graph",
    "nearest_neighbors",
    "normalize_adjacency",
    "ppr_extend",
    "per_batch_neighbors",
    "ppr_propagate",
]
