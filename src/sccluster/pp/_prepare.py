"""``prepare``: QC, size factors, log-normalisation, HVGs and (optionally) a streamed PCA, in place."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sccluster._errors import InputError
from sccluster._utils import resolve_seed
from sccluster._validation import check_counts_block, on_disk
from sccluster._version import __version__

from ._genes import _check_n_top, normalized_dispersion, rank_genes
from ._pca import LogNormReader, check_pca_args, streamed_pca
from ._prepare_backed import gene_statistics, refuse_cell_removal, streamed_qc, write_gene_columns
from ._stream import CHUNK, counts_matrix, gene_moments, iter_chunks, size_factors_from_totals

logger = logging.getLogger(__name__)


def _nonneg_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        msg = f"{name} must be a non-negative integer, got {value!r}"
        raise InputError(msg)
    return int(value)


def _counts_csr(matrix, n_obs: int, where: str) -> sp.csr_matrix:
    """Validate ``matrix`` chunk by chunk and return it as CSR float32 (no copy when it already is)."""
    if sp.issparse(matrix) and matrix.format == "csr":
        for start in range(0, n_obs, CHUNK):
            lo, hi = matrix.indptr[start], matrix.indptr[min(start + CHUNK, n_obs)]
            check_counts_block(matrix.data[lo:hi], where)
        return matrix if matrix.dtype == np.float32 else matrix.astype(np.float32)
    blocks = []
    for _, _, block in iter_chunks(matrix, n_obs, desc="reading counts"):
        check_counts_block(block, where)
        blocks.append(block.astype(np.float32))
    return blocks[0] if len(blocks) == 1 else sp.vstack(blocks, format="csr")


def _check_qc(cell_keep: np.ndarray, gene_keep: np.ndarray, min_genes: int, min_cells: int) -> None:
    n_cells, n_genes = int(cell_keep.sum()), int(gene_keep.sum())
    if n_cells == 0 or n_genes == 0:
        msg = (
            f"quality control left {n_cells} cells and {n_genes} genes (min_genes={min_genes}, "
            f"min_cells={min_cells}); check the counts, or lower min_genes / min_cells of scc.pp.prepare"
        )
        raise InputError(msg)


def _apply_qc(adata, cell_keep: np.ndarray, gene_keep: np.ndarray, min_genes: int, min_cells: int) -> None:
    n_cells, n_genes = int(cell_keep.sum()), int(gene_keep.sum())
    cell_rule = f"< {min_genes} genes or no counts" if min_genes > 0 else "no counts"
    logger.info(
        "prepare: removed %d of %d cells (%s) and %d of %d genes (in < %d cells)",
        adata.n_obs - n_cells,
        adata.n_obs,
        cell_rule,
        adata.n_vars - n_genes,
        adata.n_vars,
        min_cells,
    )
    if n_cells < adata.n_obs:
        adata._inplace_subset_obs(cell_keep)
    if n_genes < adata.n_vars:
        adata._inplace_subset_var(gene_keep)


def _log_normalise(counts: sp.csr_matrix, sf: np.ndarray) -> sp.csr_matrix:
    """``log1p(counts / sf)`` as CSR float32 sharing ``indices`` and ``indptr`` with ``counts``."""
    data = np.empty_like(counts.data, dtype=np.float32)
    indptr = counts.indptr
    for start in range(0, counts.shape[0], CHUNK):
        stop = min(start + CHUNK, counts.shape[0])
        lo, hi = indptr[start], indptr[stop]
        scale = np.repeat((1.0 / sf[start:stop]).astype(np.float32), np.diff(indptr[start : stop + 1]))
        data[lo:hi] = np.log1p(counts.data[lo:hi] * scale)
    return sp.csr_matrix((data, counts.indices, indptr), shape=counts.shape)


def prepare(
    adata,
    *,
    layer: str | None = None,
    min_genes: int = 0,
    min_cells: int = 3,
    n_top_genes: int = 2000,
    max_value: float | None = 10.0,
    n_comps: int | None = None,
    pca_max_cells: int = 50_000,
    random_state: int | None = 0,
    copy: bool = False,
):
    """Quality control, size factors, log-normalisation, highly variable genes and PCA.

    Works in place (scanpy style) unless ``copy``. Raw counts come from ``layer``, else
    ``layers["counts"]`` (so preparing prepared data again works), else ``X``. Nothing is ever
    densified as a whole; ``X`` and ``layers["counts"]`` share their index arrays.

    Parameters
    ----------
    adata
        AnnData with raw integer counts, in memory or on disk (``scc.read(path, backed="r")`` of an ``.h5ad``
        or a zarr store). An on-disk
        AnnData is prepared by streamed passes over the file, which is never changed: ``X`` keeps the raw
        counts, genes that fail ``min_cells`` stay in ``var`` (never highly variable), and cells that fail
        quality control are an error (they cannot be removed from the file).
    layer
        Layer holding the raw counts.
    min_genes
        Remove cells with fewer detected genes.
    min_cells
        Remove genes detected in fewer cells. Cells left with no counts are always removed.
    n_top_genes
        Number of highly variable genes (Seurat-style normalised dispersion).
    max_value
        Clip bound of the z-scored values fed to the PCA (``None``: no clipping).
    n_comps
        Number of principal components; ``None`` skips the PCA.
    pca_max_cells
        Most cells the PCA is fitted on (seeded subsample); all cells are projected.
    random_state
        Seed of the PCA subsample and randomized SVD.
    copy
        Return a prepared copy instead of modifying ``adata``.

    Returns
    -------
    The prepared copy when ``copy`` (not for a backed AnnData), else ``None``. Writes ``layers["counts"]`` (CSR float32
    raw counts), ``obs["size_factors"]`` (library size / median), ``X = log1p(counts / size
    factor)`` (CSR float32), ``var["highly_variable"]``, ``var["highly_variable_rank"]``,
    ``var["dispersions_norm"]``, ``var["mean"]`` and ``var["std"]`` (of ``X``), and with
    ``n_comps`` also ``obsm["X_pca"]``, ``varm["PCs"]`` (zero rows for other genes) and
    ``uns["pca"]``; the parameters go to ``uns["sccluster_prepare"]``.
    """
    min_genes = _nonneg_int(min_genes, "min_genes")
    min_cells = _nonneg_int(min_cells, "min_cells")
    n_top_genes = _check_n_top(n_top_genes)
    if n_comps is not None:
        check_pca_args(n_comps, max_value, pca_max_cells)
    seed = resolve_seed(random_state)
    opts = _Options(layer, min_genes, min_cells, n_top_genes, max_value, n_comps, int(pca_max_cells), seed)
    if on_disk(adata):
        if copy:
            msg = "prepare(copy=True) cannot copy a backed AnnData; leave copy out (the file itself is never changed)"
            raise InputError(msg)
        _prepare_backed(adata, opts)
        return None
    if copy:
        adata = adata.copy()
    matrix, where = counts_matrix(adata, layer)
    counts = _counts_csr(matrix, adata.n_obs, where)
    cell_keep, gene_keep, _ = streamed_qc(counts, adata.n_obs, adata.n_vars, None, min_genes, min_cells)
    _check_qc(cell_keep, gene_keep, min_genes, min_cells)  # before adata is touched
    adata.X = None  # replaced below; not worth subsetting
    adata.layers["counts"] = counts
    _apply_qc(adata, cell_keep, gene_keep, min_genes, min_cells)
    counts = adata.layers["counts"]
    if not counts.has_canonical_format:
        counts.sum_duplicates()

    totals = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    sf = size_factors_from_totals(totals)
    adata.obs["size_factors"] = sf
    adata.X = _log_normalise(counts, sf)

    mom = gene_moments(counts, adata.n_obs, adata.n_vars, sf)
    disp = normalized_dispersion(mom.mean_norm, mom.var_norm)
    hvg, rank = rank_genes(disp, n_top_genes)
    if adata.n_vars <= n_top_genes:
        hvg[:] = True
    write_gene_columns(adata, np.ones(adata.n_vars, dtype=bool), mom, disp, hvg, rank)
    logger.info(
        "prepare: %d cells x %d genes, %d highly variable genes", adata.n_obs, adata.n_vars, int(hvg.sum())
    )
    _finish(adata, LogNormReader(adata.X, adata.n_obs, np.flatnonzero(hvg), is_log=True), hvg, mom, opts)
    return adata if copy else None


@dataclass(frozen=True)
class _Options:
    """The checked arguments of :func:`prepare`, recorded in ``uns["sccluster_prepare"]``."""

    layer: str | None
    min_genes: int
    min_cells: int
    n_top_genes: int
    max_value: float | None
    n_comps: int | None
    pca_max_cells: int
    seed: int

    def record(self) -> dict:
        return {
            "layer": self.layer,
            "min_genes": self.min_genes,
            "min_cells": self.min_cells,
            "n_top_genes": self.n_top_genes,
            "max_value": None if self.max_value is None else float(self.max_value),
            "n_comps": None if self.n_comps is None else int(self.n_comps),
            "pca_max_cells": self.pca_max_cells,
            "random_state": self.seed,
            "sccluster_version": __version__,
        }


def _prepare_backed(adata, opts: _Options) -> None:
    """:func:`prepare` of a backed AnnData by streamed passes over the file (see ``_prepare_backed``)."""
    layer, min_genes, min_cells = opts.layer, opts.min_genes, opts.min_cells
    matrix, where = counts_matrix(adata, layer)
    cell_keep, gene_keep, totals = streamed_qc(matrix, adata.n_obs, adata.n_vars, where, min_genes, min_cells)
    _check_qc(cell_keep, gene_keep, min_genes, min_cells)
    refuse_cell_removal(cell_keep, min_genes)
    logger.info(
        "prepare (backed): kept all %d cells; %d of %d genes are in >= %d cells (the others stay in var, "
        "never highly variable)",
        adata.n_obs, int(gene_keep.sum()), adata.n_vars, min_cells,
    )  # fmt: skip
    sf = size_factors_from_totals(totals)
    adata.obs["size_factors"] = sf
    mom, disp, hvg, rank = gene_statistics(matrix, adata.n_obs, gene_keep, sf, opts.n_top_genes)
    write_gene_columns(adata, gene_keep, mom, disp, hvg, rank)
    logger.info(
        "prepare: %d cells x %d genes, %d highly variable genes", adata.n_obs, adata.n_vars, int(hvg.sum())
    )
    reader = LogNormReader(
        matrix, adata.n_obs, np.flatnonzero(hvg), size_factors=sf
    )  # counts, normalised on the fly
    _finish(adata, reader, hvg, mom, opts)
    adata.uns["sccluster_prepare"]["backed"] = True


def _finish(adata, reader: LogNormReader, hvg: np.ndarray, mom, opts: _Options) -> None:
    """The PCA (with ``n_comps``) and the record of the parameters in ``uns["sccluster_prepare"]``."""
    params = opts.record()
    n_comps, max_value = opts.n_comps, opts.max_value
    if n_comps is not None:
        _add_pca(adata, reader, hvg, mom, n_comps=int(n_comps), max_value=max_value, max_cells=opts.pca_max_cells,
                 seed=opts.seed)  # fmt: skip
    elif adata.uns.get("sccluster_prepare", {}).get("n_comps") is not None:
        # a PCA from an earlier prepare no longer matches these genes
        for store, key in ((adata.obsm, "X_pca"), (adata.varm, "PCs"), (adata.uns, "pca")):
            store.pop(key, None)
        logger.info("prepare: removed the PCA of an earlier prepare run (pass n_comps to recompute it)")
    adata.uns["sccluster_prepare"] = params


def _add_pca(
    adata, reader: LogNormReader, hvg: np.ndarray, mom, *, n_comps: int, max_value, max_cells: int, seed: int
) -> None:
    gene_index = np.flatnonzero(hvg)
    res = streamed_pca(
        reader,
        mom.mean_log[gene_index],
        mom.std_log[gene_index],
        n_comps=n_comps,
        max_value=max_value,
        max_cells=max_cells,
        seed=seed,
    )
    pcs = np.zeros((adata.n_vars, res.components.shape[0]), dtype=np.float32)
    pcs[gene_index] = res.components.T
    adata.obsm["X_pca"] = res.embedding
    adata.varm["PCs"] = pcs
    adata.uns["pca"] = {
        "variance": res.variance,
        "variance_ratio": res.variance_ratio,
        "params": {
            "n_comps": int(res.components.shape[0]),
            "max_value": max_value,
            "n_fit_cells": res.n_fit,
            "zero_center": True,
        },
    }
