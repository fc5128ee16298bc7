"""Clustering scores: ARI, NMI, Hungarian ACC, silhouette. numpy / scikit-learn only."""

from ._scores import accuracy, adjusted_rand_index, evaluate, normalized_mutual_info, silhouette

ari = adjusted_rand_index
nmi = normalized_mutual_info
acc = accuracy

__all__ = [
    "accuracy",
    "acc",
    "adjusted_rand_index",
    "ari",
    "evaluate",
    "normalized_mutual_info",
    "nmi",
    "silhouette",
]
