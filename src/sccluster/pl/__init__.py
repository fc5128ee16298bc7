"""Plotting, the scanpy way: figures of a clustering and a self-contained HTML report.

Every function reads the slots :func:`sccluster.tl.cluster` writes under ``key`` (default
``"sccluster"``), draws on a private copy of what it needs (the user's AnnData is never changed),
returns a matplotlib Figure drawn on the non-interactive Agg canvas (no window opens; Jupyter shows
it) and writes it atomically when ``save=`` names a .png, .pdf or .svg file.
"""

from ._contingency import contingency
from ._embedding import embedding
from ._markers import markers
from ._report import report
from ._sizes import cluster_sizes
from ._stability import stability
from ._training import training

__all__ = ["cluster_sizes", "contingency", "embedding", "markers", "report", "stability", "training"]
