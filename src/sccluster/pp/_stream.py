"""Streamed reading of raw counts by row chunks: library sizes, size factors, per-gene moments.

Everything here works on one row chunk at a time, so the whole matrix is never densified. The
matrix may be a scipy sparse matrix, a dense array or a backed (on-disk) AnnData dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sccluster._errors import InputError
from sccluster._utils import progress
from sccluster._validation import check_counts_block

logger = logging.getLogger(__name__)

#: Rows converted at once when streaming.
CHUNK = 4096


def counts_matrix(adata, layer: str | None):
    """Return the matrix holding raw counts and a readable name of its slot.

    ``layer`` names a layer (or ``"X"``); ``None`` means ``layers["counts"]`` when present, else ``X``.
    """
    if adata.n_obs == 0 or adata.n_vars == 0:
        msg = (
            f"the data matrix is empty ({adata.n_obs} cells x {adata.n_vars} genes); "
            "give data with cells and genes"
        )
        raise InputError(msg)
    if layer is not None:
        if layer == "X":
            return adata.X, "X"
        if layer not in adata.layers:
            msg = f"layer {layer!r} not found; available layers: {list(adata.layers)!r}"
            raise InputError(msg)
        return adata.layers[layer], f"layers[{layer!r}]"
    if "counts" in adata.layers:
        return adata.layers["counts"], "layers['counts']"
    if adata.X is None:
        msg = "the AnnData has no X and no layers['counts']; give raw counts in X or name their layer"
        raise InputError(msg)
    return adata.X, "X"


def to_csr(block) -> sp.csr_matrix:
    """Any row block (sparse or dense) as a CSR matrix."""
    if sp.issparse(block):
        return block.tocsr() if block.format != "csr" else block
    return sp.csr_matrix(np.asarray(block))


def iter_chunks(
    matrix, n_obs: int, *, chunk: int = CHUNK, desc: str | None = None
) -> Iterator[tuple[int, int, sp.csr_matrix]]:
    """Yield ``(start, stop, csr_block)`` over all rows of ``matrix`` in order."""
    starts = range(0, n_obs, chunk)
    for start in progress(starts, desc=desc, disable=n_obs <= chunk, leave=False):
        stop = min(start + chunk, n_obs)
        yield start, stop, to_csr(matrix[start:stop])


def take_rows(matrix, rows: np.ndarray) -> sp.csr_matrix:
    """Rows at sorted positions ``rows`` as CSR (works for in-memory and backed matrices)."""
    blocks = [to_csr(matrix[rows[i : i + CHUNK]]) for i in range(0, len(rows), CHUNK)]
    return blocks[0] if len(blocks) == 1 else sp.vstack(blocks, format="csr")


def row_ids(block: sp.csr_matrix) -> np.ndarray:
    """Row position (within the block) of every stored entry of a CSR block."""
    return np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))


def library_sizes(matrix, n_obs: int, where: str, *, check: bool = True) -> np.ndarray:
    """Total counts per cell (streamed); validates every chunk as raw counts when ``check``."""
    totals = np.empty(n_obs, dtype=np.float64)
    for start, stop, block in iter_chunks(matrix, n_obs, desc="library sizes"):
        if check:
            check_counts_block(block, where)
        totals[start:stop] = np.asarray(block.sum(axis=1), dtype=np.float64).ravel()
    return totals


def size_factors_from_totals(totals: np.ndarray) -> np.ndarray:
    """Library size divided by the median library size; empty cells raise :class:`InputError`."""
    n_zero = int(np.sum(totals <= 0))
    if n_zero:
        msg = f"{n_zero} cells have no counts; remove empty cells (scc.pp.prepare does this) and retry"
        raise InputError(msg)
    return totals / float(np.median(totals))


def resolve_size_factors(adata, matrix, where: str) -> np.ndarray:
    """``obs["size_factors"]`` when present and valid, else library size / median (streamed)."""
    if "size_factors" in adata.obs:
        sf = np.asarray(adata.obs["size_factors"], dtype=np.float64)
        if np.all(np.isfinite(sf)) and np.all(sf > 0):
            return sf
        logger.warning("obs['size_factors'] holds non-positive or non-finite values; recomputing them")
    return size_factors_from_totals(library_sizes(matrix, adata.n_obs, where))


@dataclass
class GeneMoments:
    """Per-gene moments of normalised counts (``counts / sf``) and of their ``log1p``.

    Variances use ``ddof=1``, like scanpy.
    """

    n_obs: int
    mean_norm: np.ndarray
    var_norm: np.ndarray
    mean_log: np.ndarray
    var_log: np.ndarray

    @property
    def std_log(self) -> np.ndarray:
        """Standard deviation of the log-normalised values, with 0 replaced by 1 (safe divisor)."""
        std = np.sqrt(self.var_log)
        std[std == 0] = 1.0
        return std


def _finish(total: np.ndarray, total_sq: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    mean = total / max(n, 1)
    var = np.maximum(total_sq / max(n, 1) - mean**2, 0.0) * n / max(n - 1, 1)
    return mean, var


def gene_moments(
    matrix, n_obs: int, n_vars: int, size_factors: np.ndarray, *, where: str | None = None
) -> GeneMoments:
    """Stream the rows of raw ``matrix`` once and return :class:`GeneMoments` for every gene.

    ``where`` (the slot name) turns on raw-count validation of every chunk.
    """
    sums = np.zeros((4, n_vars), dtype=np.float64)
    for start, stop, block in iter_chunks(matrix, n_obs, desc="gene moments"):
        if where is not None:
            check_counts_block(block, where)
        norm = block.data.astype(np.float64) / np.repeat(size_factors[start:stop], np.diff(block.indptr))
        logv = np.log1p(norm)
        idx = block.indices
        sums[0] += np.bincount(idx, weights=norm, minlength=n_vars)
        sums[1] += np.bincount(idx, weights=norm * norm, minlength=n_vars)
        sums[2] += np.bincount(idx, weights=logv, minlength=n_vars)
        sums[3] += np.bincount(idx, weights=logv * logv, minlength=n_vars)
    mean_norm, var_norm = _finish(sums[0], sums[1], n_obs)
    mean_log, var_log = _finish(sums[2], sums[3], n_obs)
    return GeneMoments(
        n_obs=n_obs, mean_norm=mean_norm, var_norm=var_norm, mean_log=mean_log, var_log=var_log
    )
