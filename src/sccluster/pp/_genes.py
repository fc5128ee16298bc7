"""Highly variable genes: Seurat-style normalised dispersion from streamed per-gene moments."""

from __future__ import annotations

import logging

import numpy as np

from sccluster._errors import InputError

from ._stream import counts_matrix, gene_moments, resolve_size_factors

logger = logging.getLogger(__name__)

#: Number of equal-width mean bins used to normalise dispersions (as in Seurat / scanpy).
N_BINS = 20


def _check_n_top(n_top_genes) -> int:
    if isinstance(n_top_genes, bool) or not isinstance(n_top_genes, (int, np.integer)) or n_top_genes < 1:
        msg = f"n_top_genes must be a positive integer, got {n_top_genes!r}"
        raise InputError(msg)
    return int(n_top_genes)


def normalized_dispersion(mean_norm: np.ndarray, var_norm: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Seurat's normalised dispersion, the maths of scanpy's ``flavor="seurat"``.

    ``dispersion = log(var / mean)`` of the normalised counts; genes are binned by ``log1p(mean)``
    into ``n_bins`` equal-width bins and the dispersion is z-scored within its bin. A bin holding one
    gene gives it 1. Genes with zero variance get NaN.
    """
    mean = np.where(mean_norm == 0, 1e-12, mean_norm)
    with np.errstate(divide="ignore", invalid="ignore"):
        disp = var_norm / mean
        disp[disp == 0] = np.nan
        disp = np.log(disp)
    log_mean = np.log1p(mean_norm)
    lo, hi = float(log_mean.min()), float(log_mean.max())
    width = (hi - lo) / n_bins if hi > lo else 1.0
    bins = np.clip(np.floor((log_mean - lo) / width).astype(np.int64), 0, n_bins - 1)
    out = np.full(disp.shape, np.nan)
    for b in np.unique(bins):
        in_bin = bins == b
        vals = disp[in_bin]
        ok = np.isfinite(vals)
        if ok.sum() == 1:
            res = np.where(ok, 1.0, np.nan)
        elif ok.sum() > 1:
            mu, sd = vals[ok].mean(), vals[ok].std(ddof=1)
            res = (vals - mu) / sd if sd > 0 else np.where(ok, 0.0, np.nan)
        else:
            res = vals
        out[in_bin] = res
    return out


def rank_genes(dispersion_norm: np.ndarray, n_top_genes: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n_top_genes`` by normalised dispersion; ties broken by gene order; NaN never chosen.

    Returns ``(highly_variable, rank)``: a boolean mask and a float rank (0 = most variable, NaN
    for genes not selected).
    """
    valid = np.flatnonzero(np.isfinite(dispersion_norm))
    order = valid[np.argsort(-dispersion_norm[valid], kind="stable")][:n_top_genes]
    mask = np.zeros(dispersion_norm.shape[0], dtype=bool)
    mask[order] = True
    rank = np.full(dispersion_norm.shape[0], np.nan)
    rank[order] = np.arange(len(order), dtype=np.float64)
    if len(order) < min(n_top_genes, dispersion_norm.shape[0]):
        logger.info(
            "only %d genes vary; selecting %d instead of %d highly variable genes",
            len(valid),
            len(order),
            n_top_genes,
        )
    return mask, rank


def select_genes(adata, n_top_genes: int = 2000, *, layer: str | None = None) -> list[str]:
    """Genes a model should use, in the order of ``adata.var_names``.

    Parameters
    ----------
    adata
        AnnData with raw counts (prepared or not; in memory or backed).
    n_top_genes
        Number of highly variable genes to select when they must be computed.
    layer
        Layer holding raw counts; ``None`` means ``layers["counts"]`` when present, else ``X``.

    Returns
    -------
    ``var_names[var["highly_variable"]]`` when that column exists; every gene when
    ``n_vars <= n_top_genes``; otherwise the ``n_top_genes`` genes of highest Seurat-style
    normalised dispersion of ``counts / size_factor`` (scanpy's ``flavor="seurat"`` maths),
    computed in one streamed pass over row chunks. ``adata`` is never modified. Deterministic; ties
    are broken by gene order. :func:`gene_mask` gives the same selection as a boolean mask.
    """
    names = np.asarray(adata.var_names, dtype=object)
    return [str(g) for g in names[gene_mask(adata, n_top_genes, layer=layer)]]


def gene_mask(adata, n_top_genes: int = 2000, *, layer: str | None = None) -> np.ndarray:
    """Boolean mask over ``adata.var`` of the genes :func:`select_genes` names.

    Positions rather than names, so it also works when ``var_names`` repeat.
    """
    n_top_genes = _check_n_top(n_top_genes)
    if "highly_variable" in adata.var:
        col = adata.var["highly_variable"]
        if col.dtype != bool:
            msg = "var['highly_variable'] must be a boolean column; fix it or delete it to recompute genes"
            raise InputError(msg)
        mask = col.to_numpy()
        if not mask.any():
            msg = (
                "var['highly_variable'] marks no gene; "
                "delete the column (or run scc.pp.prepare) to recompute it"
            )
            raise InputError(msg)
        return mask
    if adata.n_vars <= n_top_genes:
        return np.ones(adata.n_vars, dtype=bool)
    mask, _ = highly_variable(adata, n_top_genes, layer=layer)
    check_some_gene_varies(mask, adata.n_obs)
    return mask


def check_some_gene_varies(mask: np.ndarray, n_obs: int) -> None:
    """Raise :class:`InputError` when highly-variable selection found no gene with any variance."""
    if not mask.any():
        msg = (
            f"no gene varies across the {n_obs} cells, so no highly variable gene can be chosen; "
            "give at least 2 cells with different counts"
        )
        raise InputError(msg)


def highly_variable(adata, n_top_genes: int, *, layer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Compute ``(highly_variable mask, rank)`` from the raw counts of ``adata`` by streaming."""
    matrix, where = counts_matrix(adata, layer)
    sf = resolve_size_factors(adata, matrix, where)
    mom = gene_moments(matrix, adata.n_obs, adata.n_vars, sf, where=where)
    return rank_genes(normalized_dispersion(mom.mean_norm, mom.var_norm), n_top_genes)
