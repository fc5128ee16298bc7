"""Label-free batch-mixing scores of a partition: how far its clusters keep the batches apart."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._scores import contingency

#: A cluster with more than this share of its cells from one batch is a single-batch cluster.
SINGLE_BATCH_SHARE = 0.9


def single_batch_clusters(labels: ArrayLike, batches: ArrayLike, *, share: float = SINGLE_BATCH_SHARE) -> int:
    """Number of clusters with more than ``share`` (default 0.9) of their cells from one batch.

    A label-free sign of batches kept apart; a cell type present in one batch only gives such a cluster
    too. With a single batch every cluster counts.
    """
    table = contingency(batches, labels)  # batches x clusters
    return int((table.max(axis=0) > share * table.sum(axis=0)).sum())


def batch_entropy(labels: ArrayLike, batches: ArrayLike) -> float:
    """Mean over cells of the normalised entropy of the batches in the cell's cluster, in ``[0, 1]``.

    1 when every cluster holds its batches evenly, 0 when every cluster is one batch; ``nan`` with a
    single batch.
    """
    table = contingency(batches, labels).astype(float)  # batches x clusters
    if table.shape[0] < 2:
        return float("nan")
    sizes = table.sum(axis=0)
    p = table / sizes
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=0) / np.log(table.shape[0])
    return float((ent * sizes).sum() / sizes.sum())
