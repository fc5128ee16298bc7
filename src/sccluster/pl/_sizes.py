"""``pl.cluster_sizes``: bar chart of the number of cells per cluster."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sccluster._errors import InputError

from ._common import check_save, cluster_colors, cluster_labels, finish, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


def cluster_sizes(adata, *, key: str = "sccluster", save: str | Path | None = None) -> Figure:
    """Bar chart of the number of cells in each cluster, counts written on the bars.

    Parameters
    ----------
    adata
        Clustered AnnData (``obs[key]``); not changed.
    key
        Key of the clustering (default ``"sccluster"``).
    save
        Also write the figure to this path (.png, .pdf or .svg), atomically. Default: not saved.

    Returns
    -------
    The matplotlib Figure. Bars follow the order of the cluster categories (``"0"`` = largest for
    :func:`sccluster.tl.cluster`); cells without a cluster are left out and counted in the title.
    """
    labels = cluster_labels(adata, key)
    out = check_save(save)
    cats = list(labels.categories)
    if not cats:
        msg = f"obs[{key!r}] holds no cluster labels (all missing); nothing to plot"
        raise InputError(msg)
    counts = np.bincount(labels.codes[labels.codes >= 0], minlength=len(cats))
    missing = int(np.count_nonzero(labels.codes < 0))

    fig = new_figure(max(5.0, 0.35 * len(cats) + 2.0), 4.0)
    ax = fig.subplots()
    bars = ax.bar([str(c) for c in cats], counts, color=cluster_colors(adata, key, cats), edgecolor="none")
    ax.bar_label(
        bars,
        labels=[f"{c:,}" for c in counts],
        fontsize=8 if len(cats) <= 30 else 6,
        rotation=0 if len(cats) <= 15 else 90,
        padding=2,
    )
    ax.set_xlabel("cluster")
    ax.set_ylabel("cells")
    ax.set_ylim(0, counts.max() * (1.12 if len(cats) <= 15 else 1.25))
    if len(cats) > 30:
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    note = f", {missing:,} without a cluster" if missing else ""
    ax.set_title(f"{len(cats)} clusters, {int(counts.sum()):,} cells{note}")
    fig.tight_layout()
    return finish(fig, out)
