"""Optimal transport on mini-batches (torch only; never imports anndata)."""

from ._balanced import BalancedTarget
from ._sinkhorn import sinkhorn, sinkhorn_target

__all__ = ["BalancedTarget", "sinkhorn", "sinkhorn_target"]
