"""Detect whether a matrix holds raw counts, streaming a sample of rows (works on backed files)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sccluster._errors import InputError
from sccluster._validation import check_counts_block

#: Rows read per block when checking.
_BLOCK_ROWS = 1024


def _matrix(adata, layer: str | None):
    if layer is None or layer == "X":
        return adata.X, "X"
    if layer not in adata.layers:
        msg = (
            f"layer {layer!r} not found; available layers: {', '.join(adata.layers) or 'none'}; name one of them "
            "(--layer), or leave it out to read X"
        )
        raise InputError(msg)
    return adata.layers[layer], f"layers[{layer!r}]"


def _row_ranges(n_rows: int, n_check: int | None) -> list[tuple[int, int]]:
    """Contiguous row ranges to inspect: everything, or up to 4 blocks spread over the matrix."""
    if n_check is None or n_check >= n_rows:
        return [(s, min(s + _BLOCK_ROWS, n_rows)) for s in range(0, n_rows, _BLOCK_ROWS)]
    n_blocks = min(4, n_check)
    size = max(1, n_check // n_blocks)
    starts = np.linspace(0, n_rows - size, n_blocks).astype(int)
    ranges: list[tuple[int, int]] = []
    for start in np.unique(starts):
        for s in range(int(start), int(start) + size, _BLOCK_ROWS):
            ranges.append((s, min(s + _BLOCK_ROWS, int(start) + size)))
    return ranges


def _values(block) -> np.ndarray:
    if sp.issparse(block):
        return np.asarray(block.data)
    return np.asarray(block).ravel()


def is_raw_counts(adata, layer: str | None = None, *, n_check: int | None = 2000) -> bool:
    """Whether a matrix of ``adata`` looks like raw counts: finite, non-negative integers.

    Parameters
    ----------
    adata
        AnnData, in memory or backed.
    layer
        Layer to check; ``None`` or ``"X"`` checks ``X``.
    n_check
        Rows to inspect, read as up to four contiguous blocks spread over the matrix (cheap on a
        backed file). ``None`` checks every row, block by block.

    Returns
    -------
    ``True`` when every inspected value is a finite, non-negative integer. An all-zero sample
    counts as raw counts. Non-numeric matrices give ``False``.
    """
    matrix, _ = _matrix(adata, layer)
    if matrix is None:
        return False
    n_rows = matrix.shape[0]
    for start, stop in _row_ranges(n_rows, n_check):
        values = _values(matrix[start:stop])
        if values.size == 0:
            continue
        if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
            return False
        try:
            check_counts_block(values)
        except InputError:
            return False
    return True
