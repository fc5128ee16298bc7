"""A CSR matrix written to an ``.h5ad`` group one row block at a time (anndata's ``csr_matrix`` encoding)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

#: Entries per HDF5 chunk of the ``data`` and ``indices`` arrays (1 MB of float32).
H5_CHUNK = 1 << 18


def write_csr_blocks(parent, name: str, blocks: Iterable[sp.csr_matrix], shape: tuple[int, int]) -> int:
    """Write the row ``blocks`` (in order, ``shape[0]`` rows in all) as the CSR element ``parent[name]``.

    Only one block is in memory at a time: ``data`` (float32) and ``indices`` (int32) grow with each block,
    ``indptr`` is int64 (more than 2**31 stored counts is common at 10M cells). Returns the number of stored
    entries.
    """
    group = parent.create_group(name)
    group.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": shape})
    arrays = {
        key: group.create_dataset(key, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(H5_CHUNK,))
        for key, dtype in (("data", np.float32), ("indices", np.int32))
    }
    indptr = group.create_dataset("indptr", shape=(shape[0] + 1,), dtype=np.int64)
    indptr[0] = 0
    nnz, row = 0, 0
    for block in blocks:
        k, m = block.nnz, block.shape[0]
        for key, values in (("data", block.data), ("indices", block.indices)):
            arrays[key].resize((nnz + k,))
            arrays[key][nnz:] = values
        indptr[row + 1 : row + m + 1] = block.indptr[1:].astype(np.int64) + nnz
        nnz, row = nnz + k, row + m
    if row != shape[0]:
        msg = f"the blocks held {row} rows, not {shape[0]}"
        raise ValueError(msg)
    return nnz
