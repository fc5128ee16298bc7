"""Tools that write results into an AnnData (clustering, label transfer), and the cost estimate of a clustering."""

from ._cluster import cluster
from ._resources import ResourceEstimate, estimate_resources
from ._transfer import LabelTransfer, TransferResult, transfer_labels, transfer_methods

__all__ = [
    "LabelTransfer",
    "ResourceEstimate",
    "TransferResult",
    "cluster",
    "estimate_resources",
    "transfer_labels",
    "transfer_methods",
]
