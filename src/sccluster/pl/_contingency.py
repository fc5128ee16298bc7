"""``pl.contingency``: heatmap of clusters x reference labels, ordered by the Hungarian matching."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from sccluster._errors import InputError
from sccluster.metrics import evaluate

from ._common import check_save, cluster_labels, finish, label_column, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: Counts are written in the cells of tables with at most this many rows and columns.
ANNOTATE_MAX = 25


def labelled_pairs(adata, label_key: str, key: str) -> tuple[pd.Categorical, pd.Categorical, int]:
    """Clusters and labels of the cells that have both (unused categories dropped) and the number left out."""
    clusters = cluster_labels(adata, key)
    labels = label_column(adata, label_key)
    known = (labels.codes >= 0) & (clusters.codes >= 0)
    if not known.any():
        msg = (
            f"no cell has both a label in obs[{label_key!r}] and a cluster in obs[{key!r}]; "
            "nothing to compare"
        )
        raise InputError(msg)
    return (
        clusters[known].remove_unused_categories(),
        labels[known].remove_unused_categories(),
        int(np.count_nonzero(~known)),
    )


def matched_order(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Row and column orders putting the Hungarian one-to-one matching on the diagonal.

    Matched pairs come first (in row order), then the unmatched rows (in order) and the unmatched
    columns (each next to the row it shares most cells with). Returns ``(rows, cols, n_matched)``.
    """
    r, c = linear_sum_assignment(table, maximize=True)
    pairs = sorted(zip(r.tolist(), c.tolist(), strict=True))
    matched_rows, matched_cols = set(r.tolist()), set(c.tolist())
    rows = [p[0] for p in pairs] + [i for i in range(table.shape[0]) if i not in matched_rows]
    position = {row: pos for pos, row in enumerate(rows)}
    rest = [j for j in range(table.shape[1]) if j not in matched_cols]
    rest.sort(key=lambda j: (position[int(np.argmax(table[:, j]))], -table[:, j].sum()))
    cols = [p[1] for p in pairs] + rest
    return np.asarray(rows), np.asarray(cols), len(pairs)


def scores_title(scores: dict) -> str:
    """``ARI 0.812 · NMI 0.790 · ACC 0.865`` from :func:`sccluster.metrics.evaluate`'s dict."""
    return f"ARI {scores['ari']:.3f} · NMI {scores['nmi']:.3f} · ACC {scores['acc']:.3f}"


def contingency(adata, label_key: str, *, key: str = "sccluster", save: str | Path | None = None) -> Figure:
    """Heatmap of the cluster x label table, clusters matched one-to-one to labels on the diagonal.

    Each row (cluster) shows the fractions of its cells in each label; counts are written in the
    cells when the table has at most 25 rows and columns. Rows and columns are ordered by the
    Hungarian matching (the one behind ACC): matched pairs on the diagonal, framed, then unmatched
    clusters and labels. The title holds ARI, NMI and ACC from :func:`sccluster.metrics.evaluate`.
    Cells without a label are left out (counted in the title).

    Parameters
    ----------
    adata
        Clustered AnnData (``obs[key]`` and ``obs[label_key]``); not changed.
    label_key
        obs column of reference labels.
    key
        Key of the clustering (default ``"sccluster"``).
    save
        Also write the figure to this path (.png, .pdf or .svg), atomically. Default: not saved.

    Returns
    -------
    The matplotlib Figure.
    """
    cluster_labels(adata, key)
    clusters, labels, n_left_out = labelled_pairs(adata, label_key, key)
    out = check_save(save)
    table = np.zeros((len(clusters.categories), len(labels.categories)), dtype=np.int64)
    np.add.at(table, (clusters.codes, labels.codes), 1)
    rows, cols, n_matched = matched_order(table)
    table = table[np.ix_(rows, cols)]
    row_names = [str(clusters.categories[i]) for i in rows]
    col_names = [str(labels.categories[j]) for j in cols]
    scores = evaluate(np.asarray(labels).astype(str), np.asarray(clusters).astype(str))
    frac = table / np.maximum(table.sum(axis=1, keepdims=True), 1)

    n_rows, n_cols = table.shape
    fig = new_figure(max(5.5, 0.42 * n_cols + 3.5), max(4.0, 0.34 * n_rows + 2.2))
    ax = fig.subplots()
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="fraction of the cluster's cells")
    ax.set_xticks(range(n_cols), col_names, rotation=90, fontsize=8)
    ax.set_yticks(range(n_rows), row_names, fontsize=8)
    ax.set_xlabel(label_key)
    ax.set_ylabel(f"cluster ({key})")
    if max(n_rows, n_cols) <= ANNOTATE_MAX:
        for i in range(n_rows):
            for j in range(n_cols):
                if table[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{table[i, j]:,}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if frac[i, j] > 0.55 else "black",
                    )
    from matplotlib.patches import Rectangle

    for d in range(n_matched):  # frame the matched pairs
        ax.add_patch(Rectangle((d - 0.5, d - 0.5), 1, 1, fill=False, edgecolor="#d62728", linewidth=1.2))
    note = f"; {n_left_out:,} cells without a label or cluster left out" if n_left_out else ""
    size = f"{len(clusters):,} cells, {n_rows} clusters x {n_cols} labels"
    ax.set_title(f"{scores_title(scores)}\n{size}{note}", fontsize=10)
    fig.tight_layout()
    return finish(fig, out)
