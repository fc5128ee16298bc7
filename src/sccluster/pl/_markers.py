"""``pl.markers``: dot plot of each cluster's top marker genes (scanpy's wilcoxon test)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._errors import InputError
from .._utils import resolve_seed
from ._common import check_positive_int, check_save, cluster_labels, finish, new_figure, subsample_per_group

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


def _private_adata(adata, key: str, max_cells_per_cluster: int, seed: int):
    """AnnData of a seeded subsample per cluster: X, var_names and obs[key]; one-cell clusters dropped."""
    import anndata as ad
    import scipy.sparse as sp

    labels = cluster_labels(adata, key)
    codes = labels.codes.copy()
    sizes = np.bincount(codes[codes >= 0], minlength=len(labels.categories))
    single = [str(c) for c, n in zip(labels.categories, sizes, strict=True) if n == 1]
    if single:
        logger.info("markers: skipped cluster(s) %s with a single cell (no test possible)", ", ".join(single))
    codes[np.isin(codes, np.flatnonzero(sizes < 2))] = -1
    kept = [c for c, n in zip(labels.categories, sizes, strict=True) if n >= 2]
    if len(kept) < 2:
        msg = (
            f"obs[{key!r}] has {len(kept)} cluster(s) with at least 2 cells; marker genes need at least "
            "2 such clusters to compare"
        )
        raise InputError(msg)
    cells = subsample_per_group(codes, max_cells_per_cluster, seed)
    x = adata.X[cells]
    x = x.to_memory() if hasattr(x, "to_memory") else x
    x = sp.csr_matrix(x, dtype=np.float32) if sp.issparse(x) else np.asarray(x, dtype=np.float32)
    obs = pd.DataFrame(index=pd.RangeIndex(cells.size).astype(str))
    obs[key] = pd.Categorical(np.asarray(labels)[cells], categories=kept)
    private = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=adata.var_names.astype(str)))
    private.var_names_make_unique()
    if "sccluster_prepare" in adata.uns or "log1p" in adata.uns:
        private.uns["log1p"] = {"base": None}  # natural log1p, as pp.prepare writes it
    else:
        logger.warning("markers: X may not be log-normalised (no uns['sccluster_prepare']); "
                       "run scc.pp.prepare first")
    return private


def markers(
    adata,
    *,
    key: str = "sccluster",
    n_genes: int = 3,
    max_cells_per_cluster: int = 500,
    random_state: int = 0,
    save: str | Path | None = None,
) -> Figure:
    """Dot plot (scanpy's) of the top ``n_genes`` marker genes of each cluster.

    Markers come from ``sc.tl.rank_genes_groups`` (wilcoxon, each cluster against the rest) run on
    the log-normalised ``X`` of a private, seeded subsample of at most ``max_cells_per_cluster``
    cells per cluster, so the cost is bounded however many cells there are; ``adata`` is not
    changed. Clusters of one cell are skipped (logged).

    Parameters
    ----------
    adata
        Clustered AnnData with log-normalised ``X`` (after :func:`sccluster.pp.prepare`) and gene
        names in ``var_names``.
    key
        Key of the clustering (default ``"sccluster"``).
    n_genes
        Marker genes per cluster, 1 to 50 (default 3).
    max_cells_per_cluster
        Cells per cluster used in the test, >= 2 (default 500).
    random_state
        Seed of the subsample (default 0).
    save
        Also write the figure to this path (.png, .pdf or .svg), atomically. Default: not saved.

    Returns
    -------
    The matplotlib Figure.
    """
    cluster_labels(adata, key)
    n_genes = check_positive_int(n_genes, "n_genes")
    if n_genes > 50:
        msg = f"n_genes must be at most 50, got {n_genes}"
        raise InputError(msg)
    max_cells_per_cluster = check_positive_int(max_cells_per_cluster, "max_cells_per_cluster", minimum=2)
    seed = resolve_seed(random_state)
    out = check_save(save)
    if adata.X is None or adata.n_vars == 0:
        msg = "adata has no genes in X; marker genes need the log-normalised expression (run scc.pp.prepare)"
        raise InputError(msg)

    import scanpy as sc

    private = _private_adata(adata, key, max_cells_per_cluster, seed)
    n_genes = min(n_genes, private.n_vars)
    with warnings.catch_warnings():  # scanpy's notes on the private object (e.g. pandas fragmentation)
        warnings.simplefilter("ignore", category=pd.errors.PerformanceWarning)
        sc.tl.rank_genes_groups(private, key, method="wilcoxon", use_raw=False, n_genes=n_genes)
    n_groups = len(private.obs[key].cat.categories)
    plot = sc.pl.rank_genes_groups_dotplot(
        private, n_genes=n_genes, groupby=key, show=False, return_fig=True, dendrogram=False,
        title=f"Top {n_genes} marker genes per cluster (wilcoxon, {private.n_obs:,} cells tested)",
    )
    # the figure gets the size scanpy would give the dot plot on its own (its layout assumes it)
    height = max(plot.min_figure_height, len(plot.categories) * plot.DEFAULT_CATEGORY_HEIGHT + 1)
    width = len(plot.var_names) * plot.DEFAULT_CATEGORY_WIDTH + plot.group_extra_size + plot.legends_width
    fig = new_figure(max(width, 4.0), height)
    plot.ax = fig.subplots()
    plot.make_figure()
    logger.info("markers: ranked %d genes in %d clusters on %d cells", private.n_vars, n_groups,
                private.n_obs)
    return finish(fig, out)
