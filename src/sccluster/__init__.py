"""sccluster: scalable deep clustering of single-cell RNA-seq data on AnnData.

Usage, the scanpy way::

    import sccluster as scc
    adata = scc.read("data.h5ad")
    scc.pp.prepare(adata)
    scc.tl.cluster(adata, method="leiden")
    scc.pl.report(adata, "report.html")
"""

from __future__ import annotations

from . import data, datasets, io, metrics, models, pl, pp, tl
from ._errors import InputError, TrainingError
from ._settings import settings
from ._version import __version__
from .io import read

__all__ = [
    "InputError",
    "TrainingError",
    "__version__",
    "data",
    "datasets",
    "io",
    "metrics",
    "models",
    "pl",
    "pp",
    "read",
    "settings",
    "tl",
]
