"""Clustering scores: ARI, NMI, Hungarian ACC, silhouette, batch mixing. numpy / scikit-learn only."""

from ._batches import SINGLE_BATCH_SHARE, batch_entropy, single_batch_clusters
from ._scores import accuracy, adjusted_rand_index, evaluate, normalized_mutual_info, silhouette

ari = adjusted_rand_index
nmi = normalized_mutual_info
acc = accuracy

__all__ = [
    "accuracy",
    "acc",
    "adjusted_rand_index",
    "ari",
    "batch_entropy",
    "evaluate",
    "normalized_mutual_info",
    "nmi",
    "silhouette",
    "single_batch_clusters",
    "SINGLE_BATCH_SHARE",
]
