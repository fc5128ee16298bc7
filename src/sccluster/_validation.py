"""Checks on user data shared by every layer (no AnnData import needed)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._errors import InputError


def check_adata(adata, name: str = "adata") -> None:
    """Raise :class:`InputError` unless ``adata`` is an AnnData (in memory or backed)."""
    from anndata import AnnData  # imported here: this module serves layers that never import anndata

    if not isinstance(adata, AnnData):
        msg = (
            f"{name} must be an AnnData, got {type(adata).__name__}; wrap a cells x genes matrix with "
            "anndata.AnnData(X) or read a file with scc.read(path)"
        )
        raise InputError(msg)


def on_disk(adata) -> bool:
    """Whether ``adata.X`` stays on disk: an ``.h5ad`` opened backed, or a zarr store read with ``backed="r"``."""
    return bool(getattr(adata, "isbacked", False)) or is_disk_matrix(getattr(adata, "X", None))


def is_disk_matrix(matrix) -> bool:
    """Whether ``matrix`` is anndata's on-disk sparse dataset (a backed ``X`` or layer, read by row chunks)."""
    try:
        from anndata.abc import CSCDataset, CSRDataset
    except ImportError:  # anndata < 0.11
        from anndata._core.sparse_dataset import BaseCompressedSparseDataset as CSRDataset

        CSCDataset = CSRDataset
    return isinstance(matrix, (CSRDataset, CSCDataset))


def check_counts_block(block, where: str = "X") -> None:
    """Raise :class:`InputError` unless ``block`` holds finite, non-negative integer counts."""
    data = block.data if sp.issparse(block) else np.asarray(block)
    if data.size == 0:
        return
    if not np.all(np.isfinite(data)):
        msg = f"{where} contains NaN or Inf values; remove or impute them before clustering"
        raise InputError(msg)
    if data.min() < 0:
        msg = (
            f"{where} contains negative values, so it is not raw counts; "
            "pass raw counts (or name the layer that holds them with --layer)"
        )
        raise InputError(msg)
    if not np.all(np.equal(np.mod(data, 1), 0)):
        msg = (
            f"{where} contains non-integer values, but raw counts are needed; "
            "pass the raw count matrix (or name its layer with --layer)"
        )
        raise InputError(msg)


def check_n_clusters(n_clusters, n_obs: int) -> None:
    """Raise :class:`InputError` unless ``n_clusters`` is None or an integer in ``[1, n_obs]``."""
    if n_clusters is None:
        return
    if (
        isinstance(n_clusters, (bool, np.bool_))
        or not isinstance(n_clusters, (int, np.integer))
        or n_clusters < 1
    ):
        msg = f"n_clusters must be a positive integer or None, got {n_clusters!r}"
        raise InputError(msg)
    if n_clusters > n_obs:
        msg = (
            f"n_clusters={n_clusters} is more than the {n_obs} cells in the data (fewer cells than clusters); "
            f"ask for at most {n_obs} clusters"
        )
        raise InputError(msg)
