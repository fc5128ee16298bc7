"""Tools that write results into an AnnData (clustering), and the cost estimate of a clustering."""

from ._cluster import cluster
from ._resources import ResourceEstimate, estimate_resources

__all__ = ["ResourceEstimate", "cluster", "estimate_resources"]
