"""``prepare`` of a backed AnnData: QC, size factors and highly variable genes by streamed passes over the file.

The count matrix stays on disk and is read in row chunks (three passes: detection counts, library sizes over the
kept genes, gene moments), so memory is bounded by the chunk size and the per-cell and per-gene vectors. The
results are the in-memory :func:`sccluster.pp.prepare`'s, to the bit, with two differences forced by the matrix
being read-only: ``X`` keeps the raw counts (no ``layers["counts"]``, no log-normalised copy), and genes that fail
quality control stay in ``var`` with ``highly_variable`` False and NaN statistics instead of being removed. Cells
cannot be removed from a backed file, so cells that fail quality control are an error.
"""

from __future__ import annotations

import logging

import numpy as np

from sccluster._errors import InputError
from sccluster._validation import check_counts_block

from ._genes import normalized_dispersion, rank_genes
from ._stream import GeneMoments, gene_moments, iter_chunks, row_ids

logger = logging.getLogger(__name__)


def streamed_qc(matrix, n_obs: int, n_vars: int, where: str | None, min_genes: int, min_cells: int):
    """``(cell_keep, gene_keep, totals)`` of :func:`prepare`'s rules, from two passes over ``matrix`` (on disk or not).

    Cells are kept with ``>= min_genes`` detected genes and counts in the kept genes; genes detected in ``>= min_cells``
    of the cells with enough genes. ``totals`` are the library sizes over the kept genes (float64). With ``where``
    (the slot's name) every chunk is validated as raw counts.
    """
    n_genes_cell = np.empty(n_obs, dtype=np.int64)
    n_cells_gene = np.zeros(n_vars, dtype=np.int64)
    for start, stop, block in iter_chunks(matrix, n_obs, desc="quality control"):
        if where is not None:
            check_counts_block(block, where)
        block.sum_duplicates()
        detected = block.data > 0
        per_cell = np.bincount(row_ids(block)[detected], minlength=stop - start)
        n_genes_cell[start:stop] = per_cell
        keep_rows = (per_cell >= min_genes)[row_ids(block)]
        n_cells_gene += np.bincount(block.indices[detected & keep_rows], minlength=n_vars)
    gene_keep = n_cells_gene >= min_cells
    totals = np.empty(n_obs, dtype=np.float64)
    for start, stop, block in iter_chunks(matrix, n_obs, desc="library sizes"):
        kept = block[:, gene_keep] if not gene_keep.all() else block
        totals[start:stop] = np.asarray(kept.astype(np.float32).sum(axis=1), dtype=np.float64).ravel()
    cell_keep = (n_genes_cell >= min_genes) & (totals > 0)
    return cell_keep, gene_keep, totals


def refuse_cell_removal(cell_keep: np.ndarray, min_genes: int) -> None:
    """Cells of a backed file cannot be removed in place: say how many fail and what to do."""
    n_fail = int((~cell_keep).sum())
    if n_fail:
        rule = f"fewer than {min_genes} genes or no counts" if min_genes > 0 else "no counts"
        msg = (
            f"{n_fail:,} of {cell_keep.size:,} cells fail quality control ({rule}) and cells of a backed file "
            "cannot be removed in place; remove them from the file first, or read it into memory (no backed mode)"
        )
        raise InputError(msg)


def gene_statistics(matrix, n_obs: int, gene_keep: np.ndarray, sf: np.ndarray, n_top_genes: int):
    """Gene moments over all genes, and the HVG mask, rank and dispersion chosen among the kept genes."""
    mom = gene_moments(matrix, n_obs, gene_keep.size, sf)
    disp = np.full(gene_keep.size, np.nan)
    disp[gene_keep] = normalized_dispersion(mom.mean_norm[gene_keep], mom.var_norm[gene_keep])
    hvg, rank = rank_genes(disp, n_top_genes)
    if int(gene_keep.sum()) <= n_top_genes:
        hvg = gene_keep.copy()
    return mom, disp, hvg, rank


def write_gene_columns(adata, gene_keep: np.ndarray, mom: GeneMoments, disp, hvg, rank) -> None:
    """The ``var`` columns of ``prepare`` (NaN statistics for the genes quality control did not keep)."""
    mean_log = np.where(gene_keep, mom.mean_log, np.nan)
    adata.var["highly_variable"] = hvg
    adata.var["highly_variable_rank"] = rank
    adata.var["dispersions_norm"] = disp
    adata.var["mean"] = mean_log
    adata.var["std"] = np.where(gene_keep, np.sqrt(mom.var_log), np.nan)
