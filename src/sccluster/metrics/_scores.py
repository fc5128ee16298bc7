"""Label-agreement scores (used only to score finished results) and a label-free silhouette."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm

from sccluster._errors import InputError


def _as_labels(y, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        msg = f"{name} must be one-dimensional, got shape {arr.shape}"
        raise InputError(msg)
    n_missing = int(np.count_nonzero(pd.isna(arr)))
    if n_missing:
        msg = (
            f"{name} has {n_missing} missing labels (NaN or None); score only the labelled cells, "
            f"for example keep = ~pandas.isna({name})"
        )
        raise InputError(msg)
    return arr


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        msg = f"y_true has {t.shape[0]} labels but y_pred has {p.shape[0]}"
        raise InputError(msg)
    return t, p


def adjusted_rand_index(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Adjusted Rand index (scikit-learn's ``adjusted_rand_score``)."""
    t, p = _pair(y_true, y_pred)
    return float(skm.adjusted_rand_score(t, p))


def normalized_mutual_info(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Normalised mutual information, arithmetic averaging (scikit-learn's default)."""
    t, p = _pair(y_true, y_pred)
    return float(skm.normalized_mutual_info_score(t, p, average_method="arithmetic"))


def contingency(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """Contingency table, rows = true classes, columns = predicted clusters."""
    t, p = _pair(y_true, y_pred)
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    table = np.zeros((ti.max() + 1, pi.max() + 1), dtype=np.int64)
    np.add.at(table, (ti, pi), 1)
    return table


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Clustering accuracy with the best one-to-one cluster → class map (Hungarian matching).

    Clusters left unmatched (when there are more clusters than classes) count as errors.
    """
    table = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def silhouette(
    embedding: np.ndarray,
    labels: ArrayLike,
    *,
    max_cells: int = 10_000,
    random_state: int = 0,
) -> float:
    """Silhouette of ``labels`` on ``embedding`` (label-free quality), subsampled for large n.

    Returns NaN when there are fewer than 2 clusters or every cell is its own cluster.
    """
    x = np.asarray(embedding)
    lab = _as_labels(labels, "labels")
    n = x.shape[0]
    n_labels = len(np.unique(lab))
    if n_labels < 2 or n_labels >= n:
        return float("nan")
    sample = None if n <= max_cells else max_cells
    return float(skm.silhouette_score(x, lab, sample_size=sample, random_state=random_state))


def evaluate(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    embedding: np.ndarray | None = None,
) -> dict[str, float]:
    """All scores of a clustering against reference labels.

    Returns
    -------
    dict with ``ari``, ``nmi``, ``acc``, ``n_clusters`` (predicted), ``n_classes`` (true) and, when
    ``embedding`` is given, ``silhouette``.
    """
    t, p = _pair(y_true, y_pred)
    out = {
        "ari": adjusted_rand_index(t, p),
        "nmi": normalized_mutual_info(t, p),
        "acc": accuracy(t, p),
        "n_clusters": int(len(np.unique(p))),
        "n_classes": int(len(np.unique(t))),
    }
    if embedding is not None:
        out["silhouette"] = silhouette(embedding, p)
    return out
