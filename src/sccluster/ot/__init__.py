"""Optimal transport on mini-batches (torch only; never imports anndata)."""

from ._sinkhorn import sinkhorn, sinkhorn_target

__all__ = ["sinkhorn", "sinkhorn_target"]
