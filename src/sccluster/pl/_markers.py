"""``pl.markers``: dot plot of each cluster's top marker genes (scanpy's wilcoxon test)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sccluster._errors import InputError
from sccluster._utils import resolve_seed
from sccluster.tl._markers import check_lognormalised, private_subsample, rank_private

from ._common import check_positive_int, check_save, cluster_labels, finish, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


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
    changed. Clusters of one cell are skipped (logged). The subsample and the ranking are those of
    :func:`sccluster.tl.markers` (the same cells for the same seed and cap), which returns it as a table.

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
    check_lognormalised(adata, "markers")
    private = private_subsample(adata, key, max_cells_per_cluster, seed, option="key")
    n_genes = min(n_genes, private.n_vars)
    rank_private(private, key, method="wilcoxon", n_genes=n_genes)  # the machinery of tl.markers

    import scanpy as sc

    n_groups = len(private.obs[key].cat.categories)
    plot = sc.pl.rank_genes_groups_dotplot(
        private,
        n_genes=n_genes,
        groupby=key,
        show=False,
        return_fig=True,
        dendrogram=False,
        title=f"Top {n_genes} marker genes per cluster (wilcoxon, {private.n_obs:,} cells tested)",
    )
    # the figure gets the size scanpy would give the dot plot on its own (its layout assumes it)
    height = max(plot.min_figure_height, len(plot.categories) * plot.DEFAULT_CATEGORY_HEIGHT + 1)
    width = len(plot.var_names) * plot.DEFAULT_CATEGORY_WIDTH + plot.group_extra_size + plot.legends_width
    fig = new_figure(max(width, 4.0), height)
    plot.ax = fig.subplots()
    plot.make_figure()
    logger.info(
        "markers: ranked %d genes in %d clusters on %d cells", private.n_vars, n_groups, private.n_obs
    )
    return finish(fig, out)
