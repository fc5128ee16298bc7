"""Checks on user data shared by every layer (no AnnData import needed)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._errors import InputError


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
