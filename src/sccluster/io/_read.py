"""``read``: one entry point for every supported file format."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from sccluster._errors import InputError
from sccluster._validation import on_disk

from ._counts import is_raw_counts
from ._formats import detect_format, normalise_format, short_reason
from ._readers import read_10x_h5, read_10x_mtx, read_h5ad, read_loom, read_zarr
from ._structure import check_sparse_structure
from ._text import OrientationWarning, read_text

logger = logging.getLogger(__name__)

_TEXT = ("csv", "tsv", "txt")
_LABELS = {
    "h5ad": "an .h5ad file",
    "zarr": "an AnnData zarr store",
    "10x_h5": "a 10x CellRanger .h5 file",
    "10x_mtx": "a 10x Matrix Market folder",
    "loom": "a .loom file",
    "csv": "a comma-separated table",
    "tsv": "a tab-separated table",
    "txt": "a delimited text table",
}


def _load(path: Path, fmt: str, backed: str | None, transpose: bool | None):
    """Dispatch to the reader of ``fmt``; return (adata, orientation warning or None)."""
    if fmt == "h5ad":
        return read_h5ad(path, backed), None
    if fmt == "zarr":
        return read_zarr(path, backed), None
    if fmt == "10x_h5":
        return read_10x_h5(path), None
    if fmt == "10x_mtx":
        return read_10x_mtx(path if path.is_dir() else path.parent), None
    if fmt == "loom":
        return read_loom(path), None
    return read_text(path, fmt, transpose)


def _unreadable(path: Path, fmt: str, err: BaseException) -> InputError:
    msg = (
        f"could not read {str(path)!r} as {_LABELS[fmt]} ({short_reason(err)}); "
        "check that the file is complete and in that format (re-export or re-download a damaged file)"
    )
    return InputError(msg)


def _check_structure(adata, path: Path, fmt: str) -> None:
    """Check the sparse matrices just read (``X`` streamed when backed, in-memory layers)."""
    try:
        check_sparse_structure(adata.X, where="X", source=str(path))
        for name, matrix in adata.layers.items():
            check_sparse_structure(matrix, where=f"layers[{name!r}]", source=str(path))
    except (InputError, MemoryError):
        raise
    except Exception as err:  # h5py or zarr could not read a damaged chunk of a file on disk
        raise _unreadable(path, fmt, err) from err


def _make_names_unique(adata) -> None:
    for axis, names, fix in (
        ("cell (obs)", adata.obs_names, adata.obs_names_make_unique),
        ("gene (var)", adata.var_names, adata.var_names_make_unique),
    ):
        if not names.is_unique:
            n_dup = int(names.duplicated().sum())
            logger.warning("%d duplicated %s names; made unique by appending '-1', '-2', ...", n_dup, axis)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                fix()


def _as_csr_float32(X):
    """CSR float32 version of an in-memory numeric matrix (the same object when already so)."""
    if sp.issparse(X):
        if X.format == "csr" and X.dtype == np.float32:
            return X
        return sp.csr_matrix(X, dtype=np.float32)
    arr = np.asarray(X)
    if arr.ndim == 2 and np.issubdtype(arr.dtype, np.number):
        return sp.csr_matrix(arr, dtype=np.float32)
    return X


def read(
    path: str | os.PathLike,
    *,
    backed: Literal["r"] | None = None,
    layer: str | None = None,
    format: str | None = None,
    transpose: bool | None = None,
    share_counts: bool = False,
):
    """Read single-cell counts from any supported format into an AnnData.

    Supported: ``.h5ad`` and AnnData ``.zarr`` stores (both also backed), 10x CellRanger ``.h5``, a 10x Matrix Market folder
    (``matrix.mtx[.gz]``, ``barcodes.tsv[.gz]``, ``features.tsv[.gz]`` or ``genes.tsv``; gene
    symbols become ``var_names``, Ensembl IDs go to ``var["gene_ids"]``), ``.loom``, and
    ``.csv`` / ``.tsv`` / ``.txt`` tables (optionally ``.gz``) of cells x genes with cell names in
    the first column and gene names in the header. The file is opened read-only and never changed.

    Parameters
    ----------
    path
        File or 10x folder.
    backed
        ``"r"`` opens an ``.h5ad`` backed, or reads a zarr store with its sparse ``X`` left on disk (``X`` is
        streamed by every step of the package); ``None`` loads it into memory.
    layer
        Layer that holds the raw counts, if not ``X``. It must exist; whether it holds raw counts
        is recorded in ``uns["sccluster_io"]``.
    format
        Force a format (``"h5ad"``, ``"10x_h5"``, ``"10x_mtx"``, ``"loom"``, ``"csv"``, ``"tsv"``,
        ``"txt"``) instead of guessing it from the extension.
    transpose
        Text tables only. ``True`` reads a genes x cells table (``--transpose`` of the command line);
        ``None`` warns once (a log message at level WARNING and an ``OrientationWarning``) when the table
        looks transposed (see :mod:`sccluster.io._text`); ``False`` reads it as is, without the check.
    share_counts
        When ``X`` holds raw counts (in memory), ``layers["counts"]`` is a copy of ``X`` by default.
        ``True`` stores the same matrix object instead (no extra memory), but then any in-place
        change of ``X`` (``scanpy.pp.normalize_total``, ``scanpy.pp.log1p``) also changes
        ``layers["counts"]``.

    Returns
    -------
    AnnData with unique obs/var names, ``X`` as CSR ``float32`` (in memory), ``layers["counts"]``
    when ``X`` holds raw counts, and ``uns["sccluster_io"]`` = ``{"source", "format",
    "X_is_raw_counts"}`` (plus ``"counts_layer"``, ``"layer_is_raw_counts"`` when ``layer`` is set).

    Raises
    ------
    InputError
        Missing file, unknown format, unreadable or corrupt file (also a sparse matrix whose indices or
        ``indptr`` are inconsistent), empty matrix, missing layer.
    """
    if backed not in (None, "r"):
        msg = f"backed={backed!r} is not allowed (the input file is never modified); use backed='r' or None"
        raise InputError(msg)
    p = Path(path).expanduser()
    if not p.exists():
        msg = f"file not found: {str(p)!r}; check the path"
        raise InputError(msg)
    fmt = normalise_format(format) if format is not None else detect_format(p)
    if p.is_dir() and fmt not in ("10x_mtx", "zarr"):
        msg = f"{str(p)!r} is a folder, but format {fmt!r} needs a file; pass the file path"
        raise InputError(msg)
    if backed is not None and fmt not in ("h5ad", "zarr"):
        msg = f"backed='r' works only for .h5ad files and zarr stores, not {_LABELS[fmt]}; use backed=None"
        raise InputError(msg)
    if transpose and fmt not in _TEXT:
        msg = (
            f"transpose=True is only for csv/tsv/txt tables, not {_LABELS[fmt]} (always read as cells x genes); "
            "leave out transpose=True (--transpose)"
        )
        raise InputError(msg)

    try:
        with warnings.catch_warnings():  # duplicated names are fixed (and logged) below
            warnings.filterwarnings("ignore", message=r".*names are not unique", category=UserWarning)
            adata, orientation_warning = _load(p, fmt, backed, transpose)
    except (InputError, MemoryError):
        raise
    except Exception as err:  # any library error on a bad file becomes one clear line
        raise _unreadable(p, fmt, err) from err
    try:
        _check_structure(adata, p, fmt)
        if orientation_warning:
            logger.warning(orientation_warning)
            warnings.warn(orientation_warning, OrientationWarning, stacklevel=2)
        if adata.n_obs == 0 or adata.n_vars == 0:
            msg = f"{str(p)!r} holds an empty matrix ({adata.n_obs} cells x {adata.n_vars} genes); pass a file with data"
            raise InputError(msg)
        _make_names_unique(adata)
        if not on_disk(adata) and adata.X is not None:
            adata.X = _as_csr_float32(adata.X)
        if layer is not None and layer != "X" and layer not in adata.layers:
            msg = (
                f"layer {layer!r} not found in {p.name}; available layers: {', '.join(adata.layers) or 'none'}; name one "
                "of them (--layer), or leave it out to read X"
            )
            raise InputError(msg)

        try:  # a backed file is read here for the first time: a damaged chunk fails here
            x_raw = adata.X is not None and is_raw_counts(adata)
            layer_raw = None if layer is None else bool(is_raw_counts(adata, layer))
        except (InputError, MemoryError):
            raise
        except Exception as err:
            raise _unreadable(p, fmt, err) from err
    except BaseException:  # a backed file is not left open behind an error
        if adata.isbacked:
            adata.file.close()
        raise
    if x_raw and not on_disk(adata) and "counts" not in adata.layers:
        adata.layers["counts"] = adata.X if share_counts else adata.X.copy()
    info = {"source": str(p), "format": fmt, "X_is_raw_counts": bool(x_raw)}
    if layer is not None:
        info["counts_layer"] = layer
        info["layer_is_raw_counts"] = layer_raw
    adata.uns["sccluster_io"] = info
    logger.info("read %d cells x %d genes from %s (%s)", adata.n_obs, adata.n_vars, p, fmt)
    if not x_raw and layer is None:
        logger.info("X does not look like raw counts; name the layer that holds them (layer=...)")
    return adata
