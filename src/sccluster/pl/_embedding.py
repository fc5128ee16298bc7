"""``pl.embedding``: UMAP of the clustering embedding, coloured by cluster (and obs columns)."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sccluster._errors import InputError
from sccluster._utils import prefer_blocking_numba_threads, resolve_seed

from ._common import (
    check_positive_int,
    check_save,
    cluster_colors,
    cluster_labels,
    finish,
    new_figure,
    subsample,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: Width and height (inches) of one panel.
PANEL_SIZE = (5.5, 4.5)


def _color_keys(adata, key: str, color: str | Sequence[str] | None) -> list[str]:
    extra = [color] if isinstance(color, str) else list(color or [])
    for c in extra:
        if not isinstance(c, str) or c not in adata.obs.columns:
            cols = ", ".join(map(str, list(adata.obs.columns)[:20])) or "none"
            msg = f"color {c!r} is not a column of obs; give obs column names (available: {cols})"
            raise InputError(msg)
    return list(dict.fromkeys([key, *extra]))


def _coordinates(adata, key: str, cells: np.ndarray | None, random_state: int) -> tuple[np.ndarray, str]:
    """2-D coordinates of the cells drawn and a description of where they come from."""
    umap = adata.obsm.get("X_umap") if "X_umap" in adata.obsm else None
    if umap is not None and np.ndim(umap) == 2 and np.shape(umap)[1] >= 2:
        xy = np.asarray(umap)[:, :2] if cells is None else np.asarray(umap)[cells, :2]
        return xy.astype(np.float32), "UMAP (obsm['X_umap'])"
    rep = f"X_{key}"
    if rep not in adata.obsm:
        msg = (
            f"obsm has neither 'X_umap' nor {rep!r} (the embedding clustered under key {key!r}); "
            f"run scc.tl.cluster(adata, key_added={key!r}) or scanpy.tl.umap first"
        )
        raise InputError(msg)
    emb = np.asarray(adata.obsm[rep] if cells is None else adata.obsm[rep][cells], dtype=np.float32)
    if emb.ndim != 2 or emb.shape[1] < 2:
        msg = f"obsm[{rep!r}] must have at least 2 columns to be drawn, got shape {emb.shape}"
        raise InputError(msg)
    if not np.all(np.isfinite(emb)):
        msg = f"obsm[{rep!r}] contains NaN or Inf values; recompute the clustering"
        raise InputError(msg)
    if emb.shape[1] == 2:  # already two-dimensional: drawn as it is
        return emb, f"obsm[{rep!r}]"
    import anndata as ad
    import scanpy as sc

    prefer_blocking_numba_threads()
    tmp = ad.AnnData(obs=pd.DataFrame(index=pd.RangeIndex(emb.shape[0]).astype(str)), obsm={"X_emb": emb})
    sc.pp.neighbors(tmp, use_rep="X_emb", n_neighbors=min(15, emb.shape[0] - 1), random_state=random_state)
    sc.tl.umap(tmp, random_state=random_state)
    return np.asarray(tmp.obsm["X_umap"], dtype=np.float32), f"UMAP of obsm[{rep!r}]"


def embedding(
    adata,
    *,
    key: str = "sccluster",
    color: str | Sequence[str] | None = None,
    max_cells: int = 50_000,
    random_state: int = 0,
    save: str | Path | None = None,
) -> Figure:
    """UMAP of the embedding the clusters were found in, coloured by cluster.

    The UMAP is computed with scanpy (``sc.pp.neighbors`` on ``obsm[f"X_{key}"]``, then
    ``sc.tl.umap``) on a private AnnData; ``adata`` is not changed. When ``obsm["X_umap"]`` exists it
    is reused instead; a 2-column embedding is drawn as it is.

    Parameters
    ----------
    adata
        Clustered AnnData (``obs[key]``, and ``obsm[f"X_{key}"]`` or ``obsm["X_umap"]``).
    key
        Key of the clustering (default ``"sccluster"``).
    color
        obs column(s) to draw in extra panels, one panel each (categorical or numeric), e.g.
        ``["cell_type", "sccluster_confidence"]``. Default: only the clusters.
    max_cells
        At most this many cells (>= 3, default 50,000) are embedded and drawn: larger data are
        subsampled (seeded); the title then says how many cells are shown.
    random_state
        Seed of the subsample and of the UMAP (default 0).
    save
        Also write the figure to this path (.png, .pdf or .svg), atomically. Default: not saved.

    Returns
    -------
    The matplotlib Figure, one panel per coloured quantity.
    """
    labels = cluster_labels(adata, key)
    keys = _color_keys(adata, key, color)
    max_cells = check_positive_int(max_cells, "max_cells", minimum=3)
    seed = resolve_seed(random_state)
    out = check_save(save)
    if adata.n_obs < 3:
        msg = f"adata has {adata.n_obs} cells; at least 3 are needed to draw an embedding"
        raise InputError(msg)

    import anndata as ad
    import scanpy as sc

    cells = subsample(adata.n_obs, max_cells, seed)
    xy, source = _coordinates(adata, key, cells, seed)
    obs = pd.DataFrame(index=pd.RangeIndex(xy.shape[0]).astype(str))
    colors = {key: cluster_colors(adata, key, labels.categories)}
    for k in keys:
        col = labels if k == key else adata.obs[k]
        values = np.asarray(col) if cells is None else np.asarray(col)[cells]
        if isinstance(col.dtype, pd.CategoricalDtype):  # keep the category order and the user's colours
            cats = col.categories if k == key else col.cat.categories
            values = pd.Categorical(values, categories=cats)
            stored = adata.uns.get(f"{k}_colors") if k != key else None
            if stored is not None and len(stored) == len(cats):
                colors[k] = list(stored)
        obs[k] = values
    private = ad.AnnData(obs=obs, obsm={"X_umap": xy})
    for k, c in colors.items():
        private.uns[f"{k}_colors"] = c

    ncols = min(len(keys), 2)
    nrows = math.ceil(len(keys) / ncols)
    fig = new_figure(PANEL_SIZE[0] * ncols + 1.5 * (ncols - 1), PANEL_SIZE[1] * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    point = min(30.0, max(1.0, 120_000 / xy.shape[0]))
    for ax, k in zip(axes, keys, strict=True):
        with warnings.catch_warnings():  # scanpy's own use of soon-deprecated matplotlib calls
            warnings.simplefilter("ignore", category=PendingDeprecationWarning)
            sc.pl.embedding(
                private,
                basis="X_umap",
                color=k,
                ax=ax,
                show=False,
                size=point,
                colorbar_loc=None,
                frameon=False,
                title=k,
            )
        numeric = not isinstance(private.obs[k].dtype, pd.CategoricalDtype)
        if numeric and ax.collections:  # scanpy's colorbar would go through pyplot: add it here
            fig.colorbar(ax.collections[-1], ax=ax, fraction=0.05, pad=0.01)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    shown = "" if cells is None else f", {xy.shape[0]:,} of {adata.n_obs:,} cells (random subsample)"
    fig.suptitle(f"{source}{shown}")
    fig.tight_layout()
    logger.info("embedding: drew %s of %d cells", source, xy.shape[0])
    return finish(fig, out)
