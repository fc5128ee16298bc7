"""``pl.stability``: per-cluster agreement across seeds from ``uns[key]["stability"]``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sccluster._errors import InputError

from ._common import check_key, check_save, cluster_colors, finish, natural_sort, new_figure, run_info

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


def stability_entry(adata, key: str) -> dict[str, Any]:
    """Checked ``uns[key]["stability"]``: n_seeds, mean_pairwise_ari, clusters (str), cluster_agreement."""
    check_key(adata, key)
    entry = run_info(adata, key).get("stability")
    if not isinstance(entry, Mapping):
        msg = (
            f"uns[{key!r}] has no 'stability' entry; cluster with n_seeds > 1 (scc.tl.cluster(adata, "
            "n_seeds=5) or sccluster cluster --n-seeds 5) to measure the agreement across seeds"
        )
        raise InputError(msg)
    missing = [k for k in ("n_seeds", "mean_pairwise_ari", "clusters", "cluster_agreement") if k not in entry]
    if missing:
        msg = (
            f"uns[{key!r}]['stability'] lacks {', '.join(missing)}; "
            "recompute it by clustering with n_seeds > 1"
        )
        raise InputError(msg)
    clusters = np.asarray([str(c) for c in np.asarray(entry["clusters"]).ravel()], dtype=object)
    agreement = np.asarray(entry["cluster_agreement"], dtype=np.float64).ravel()
    if clusters.size == 0 or clusters.size != agreement.size:
        msg = (
            f"uns[{key!r}]['stability'] must hold one agreement per cluster, got {clusters.size} clusters "
            f"and {agreement.size} agreements"
        )
        raise InputError(msg)
    return {
        "n_seeds": int(entry["n_seeds"]),
        "mean_pairwise_ari": float(entry["mean_pairwise_ari"]),
        "clusters": clusters,
        "cluster_agreement": agreement,
    }


def stability(adata, *, key: str = "sccluster", save: str | Path | None = None) -> Figure:
    """Bar chart of each cluster's agreement across seeds, the mean pairwise ARI in the title.

    Parameters
    ----------
    adata
        Clustered AnnData with ``uns[key]["stability"]`` = ``{"n_seeds", "mean_pairwise_ari",
        "clusters", "cluster_agreement"}`` (agreements in [0, 1], one per cluster); not changed.
    key
        Key of the clustering (default ``"sccluster"``).
    save
        Also write the figure to this path (.png, .pdf or .svg), atomically. Default: not saved.

    Returns
    -------
    The matplotlib Figure.

    Raises
    ------
    InputError
        No stability entry (cluster with ``n_seeds > 1``), or a malformed one.
    """
    entry = stability_entry(adata, key)
    out = check_save(save)
    clusters, agreement = entry["clusters"], entry["cluster_agreement"]
    stored = []
    if key in adata.obs.columns and hasattr(adata.obs[key], "cat"):
        stored = [str(c) for c in adata.obs[key].cat.categories]
    order = stored if set(clusters) <= set(stored) else natural_sort(set(clusters))
    order = [c for c in order if c in set(clusters)]
    pos = {c: i for i, c in enumerate(clusters)}
    values = np.asarray([agreement[pos[c]] for c in order])
    palette = dict(zip(stored, cluster_colors(adata, key, stored), strict=True)) if stored else {}
    colors = [palette.get(c, "#4c72b0") for c in order]

    fig = new_figure(max(5.0, 0.35 * len(order) + 2.0), 4.0)
    ax = fig.subplots()
    bars = ax.bar(order, values, color=colors, edgecolor="none")
    ax.bar_label(
        bars,
        labels=[f"{v:.2f}" for v in values],
        fontsize=7,
        padding=2,
        rotation=0 if len(order) <= 15 else 90,
    )
    ax.set_ylim(0, 1.12)
    ax.axhline(1.0, color="#999999", linewidth=0.8, linestyle=":")
    ax.set_xlabel("cluster")
    ax.set_ylabel("agreement across seeds")
    if len(order) > 30:
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(f"{entry['n_seeds']} seeds, mean pairwise ARI {entry['mean_pairwise_ari']:.3f}")
    fig.tight_layout()
    return finish(fig, out)
