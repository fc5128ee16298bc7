"""Tools that write results into an AnnData: clustering."""

from ._cluster import cluster

__all__ = ["cluster"]
