"""Tools that write results into an AnnData: clustering, marker genes, marker-based annotation, label transfer.

- :func:`cluster`: fit a clustering method and store its labels, embedding and run record.
- :func:`markers`: marker genes of each cluster (scanpy's ``rank_genes_groups`` on a bounded subsample).
- :func:`annotate`: name clusters after marker gene sets (shipped: :func:`marker_sets`; any dict or
  CSV / GMT / JSON file: :func:`read_markers`), ``"unassigned"`` when none fits.
- :func:`transfer_labels` / :class:`LabelTransfer`: cell types of a query from a labelled reference, with
  ``"unknown"`` for cells that fit no reference type.
- :func:`estimate_resources`: the cost estimate of a clustering.
"""

from ._annotate import annotate
from ._cluster import cluster
from ._marker_sets import marker_sets, read_markers
from ._markers import markers
from ._resources import ResourceEstimate, estimate_resources
from ._transfer import LabelTransfer, TransferResult, transfer_labels, transfer_methods

__all__ = [
    "LabelTransfer",
    "ResourceEstimate",
    "TransferResult",
    "annotate",
    "cluster",
    "estimate_resources",
    "marker_sets",
    "markers",
    "read_markers",
    "transfer_labels",
    "transfer_methods",
]
