"""Structure checks of compressed sparse matrices (CSR / CSC) as read from a file.

A valid HDF5 file can still hold an inconsistent matrix (indices out of range or negative, a decreasing
``indptr``, arrays of mismatched lengths, bytes corrupted inside the file). scipy does not check this
when a matrix is built from its arrays, so the damage would surface later as an obscure numpy error.
:func:`check_sparse_structure` checks it once, right after reading: vectorised numpy on blocks of at
most :data:`CHUNK` entries, so a matrix kept on disk (backed ``.h5ad``) is streamed, never loaded.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sccluster._errors import InputError

#: Entries of ``indices`` / ``indptr`` examined at once (on a backed file: read at once).
CHUNK = 1 << 22

_REMEDY = "the file is damaged or was written by a faulty tool; re-export or re-download it"


def _arrays(matrix):
    """``(format, indptr, indices, data, shape)`` of an in-memory or backed CSR/CSC matrix, else None."""
    if sp.issparse(matrix) and matrix.format in ("csr", "csc"):
        return matrix.format, matrix.indptr, matrix.indices, matrix.data, matrix.shape
    group = getattr(matrix, "group", None)  # anndata's backed sparse dataset (h5py group)
    fmt = getattr(matrix, "format", None)
    if group is not None and fmt in ("csr", "csc") and all(k in group for k in ("indptr", "indices", "data")):
        return fmt, group["indptr"], group["indices"], group["data"], tuple(matrix.shape)
    return None


def _min_max(values, n: int) -> tuple[int, int] | None:
    lo, hi = None, None
    for start in range(0, n, CHUNK):
        block = np.asarray(values[start : start + CHUNK])
        if block.size:
            b_lo, b_hi = block.min(), block.max()
            lo = b_lo if lo is None else min(lo, b_lo)
            hi = b_hi if hi is None else max(hi, b_hi)
    return None if lo is None or hi is None else (int(lo), int(hi))


def _first_decrease(indptr, n: int) -> int | None:
    """Position ``i`` of the first ``indptr[i+1] < indptr[i]``, or None."""
    for start in range(0, n - 1, CHUNK):
        block = np.asarray(indptr[start : min(start + CHUNK + 1, n)])
        bad = np.flatnonzero(np.diff(block) < 0)
        if bad.size:
            return start + int(bad[0])
    return None


def sparse_problem(matrix) -> str | None:
    """What is wrong with the structure of a CSR/CSC ``matrix`` (in memory or backed), or None.

    Checks that ``indptr`` has one entry per row (CSR) or column (CSC) plus one, starts at 0, never
    decreases and ends at the number of stored entries; that ``indices`` and ``data`` have that length;
    and that every index is an integer in ``[0, n)`` for the other axis. Other matrices give None.
    """
    found = _arrays(matrix)
    if found is None:
        return None
    fmt, indptr, indices, data, shape = found
    n_major, n_minor = (shape[0], shape[1]) if fmt == "csr" else (shape[1], shape[0])
    major, minor = ("rows", "column") if fmt == "csr" else ("columns", "row")
    n_ptr, n_idx, n_data = (int(a.shape[0]) for a in (indptr, indices, data))  # h5py, zarr or numpy arrays
    if n_ptr != n_major + 1:
        return f"indptr has {n_ptr:,} entries for {n_major:,} {major} (expected {n_major + 1:,})"
    if n_idx != n_data:
        return f"indices has {n_idx:,} entries but data has {n_data:,}"
    for name, arr in (("indptr", indptr), ("indices", indices)):
        if not np.issubdtype(np.dtype(arr.dtype), np.integer):
            return f"{name} holds {np.dtype(arr.dtype)} values instead of integers"
    first, last = int(indptr[0]), int(indptr[n_ptr - 1])
    if first != 0:
        return f"indptr starts at {first:,} instead of 0"
    if last != n_idx:
        return f"indptr ends at {last:,} but {n_idx:,} entries are stored"
    drop = _first_decrease(indptr, n_ptr)
    if drop is not None:
        return f"indptr decreases at position {drop + 1:,}"
    bounds = _min_max(indices, n_idx)
    if bounds is not None and bounds[0] < 0:
        return f"{minor} indices are negative (down to {bounds[0]:,})"
    if bounds is not None and bounds[1] >= n_minor:
        return f"{minor} indices reach {bounds[1]:,} but there are only {n_minor:,} {minor}s"
    return None


def check_sparse_structure(matrix, *, where: str, source: str) -> None:
    """Raise :class:`InputError` when the CSR/CSC ``matrix`` read from ``source`` is inconsistent.

    Parameters
    ----------
    matrix
        Any matrix; only scipy CSR/CSC matrices and anndata's backed sparse datasets are checked.
    where
        Name of the matrix in the file (``"X"``, ``"layers['counts']"``), for the message.
    source
        The file it was read from, for the message.
    """
    problem = sparse_problem(matrix)
    if problem is not None:
        msg = f"{source!r} holds a damaged sparse matrix in {where}: {problem}; {_REMEDY}"
        raise InputError(msg)
