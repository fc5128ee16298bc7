"""Optimal transport on mini-batches (torch only; never imports anndata)."""

from ._balanced import (
    DEFAULT_ESTIMATE,
    DEFAULT_MOMENTUM,
    DEFAULT_N_ITERS,
    DEFAULT_POWER,
    ESTIMATES,
    BalancedTarget,
    Estimate,
)
from ._sinkhorn import sinkhorn, sinkhorn_target

__all__ = [
    "DEFAULT_ESTIMATE",
    "DEFAULT_MOMENTUM",
    "DEFAULT_N_ITERS",
    "DEFAULT_POWER",
    "ESTIMATES",
    "BalancedTarget",
    "Estimate",
    "sinkhorn",
    "sinkhorn_target",
]
