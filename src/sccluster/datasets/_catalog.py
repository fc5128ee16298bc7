"""The bundled demo and the benchmark datasets in ``settings.datasetdir``."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Literal

from sccluster._errors import InputError
from sccluster._settings import settings

DEMO_FILE = "pbmc4k_demo.h5ad"


def demo_path() -> Path:
    """Path of the bundled demo file (3,000 PBMC 4k cells x 2,000 genes, labels in ``cell_type``)."""
    resource = resources.files("sccluster.datasets").joinpath("_data", DEMO_FILE)
    path = Path(str(resource))
    if not path.is_file():
        msg = f"the bundled demo file {DEMO_FILE} is missing from the installation; reinstall sccluster"
        raise InputError(msg)
    return path


def demo():
    """Load the bundled real demo subset.

    3,000 cells drawn uniformly at random (seed 0) from ``pbmc_4k_top2000`` (10x Genomics PBMC 4k,
    top 2,000 genes of the scDCC authors), raw counts in ``X`` and ``layers["counts"]``, 8
    ground-truth labels in ``obs["cell_type"]``; provenance in ``uns["source"]``,
    ``uns["citation"]`` and ``uns["demo_notes"]`` (see ``datasets/_data/README.md``).

    Returns
    -------
    AnnData (3,000 × 2,000), read with :func:`sccluster.io.read`.
    """
    from sccluster.io import read

    return read(demo_path())


def list_datasets() -> list[str]:
    """Names of the ``.h5ad`` datasets in ``settings.datasetdir`` (file stems, sorted)."""
    folder = Path(settings.datasetdir)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.h5ad") if p.is_file())


def load(name_or_path: str | os.PathLike, *, backed: Literal["r"] | None = None):
    """Load a benchmark dataset by name, the demo (``"demo"``), or any file by path.

    Parameters
    ----------
    name_or_path
        A name from :func:`list_datasets` (with or without ``.h5ad``), ``"demo"``, or a path of
        any format :func:`sccluster.io.read` supports.
    backed
        ``"r"`` to open an ``.h5ad`` backed (read-only, ``X`` stays on disk).

    Raises
    ------
    InputError
        Neither an existing file nor a known dataset name (the message lists the names).
    """
    from sccluster.io import read

    path = Path(name_or_path).expanduser()
    if path.exists():
        return read(path, backed=backed)
    name = str(name_or_path)
    stem = name[: -len(".h5ad")] if name.endswith(".h5ad") else name
    if stem == "demo":
        return demo() if backed is None else read(demo_path(), backed=backed)
    available = list_datasets()
    if stem in available:
        return read(Path(settings.datasetdir) / f"{stem}.h5ad", backed=backed)
    looks_like_path = isinstance(name_or_path, os.PathLike) or os.sep in name or "/" in name
    if looks_like_path:
        return read(path, backed=backed)  # raises the file-not-found error
    names = ", ".join(available) if available else "none found"
    msg = (
        f"no file or dataset named {name!r}; datasets in {str(settings.datasetdir)!r}: {names} (or 'demo'); "
        "set sccluster.settings.datasetdir or $SCCLUSTER_DATASETDIR, or pass a file path"
    )
    raise InputError(msg)
