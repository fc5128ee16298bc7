"""sccluster: scalable deep clustering of single-cell RNA-seq data on AnnData.

Usage, the scanpy way::

    import sccluster as scc

    adata = scc.read("data.h5ad")
    scc.pp.prepare(adata)
    scc.tl.cluster(adata, method="leiden")
    scc.pl.report(adata, "report.html")

The submodules (``scc.pp``, ``scc.tl``, ...) and ``scc.read`` are imported on first use, so that
``import sccluster`` is quick and the command line can handle a Ctrl-C while the heavy libraries load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import InputError, TrainingError
from ._settings import settings
from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from . import data, datasets, io, metrics, models, pl, pp, tl
    from .io import read

_SUBMODULES = ("data", "datasets", "io", "metrics", "models", "pl", "pp", "tl")

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


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name == "read":
        return importlib.import_module(".io", __name__).read
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
