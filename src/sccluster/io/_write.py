"""Atomic ``.h5ad`` writer: the target appears complete or not at all."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from sccluster._errors import InputError
from sccluster._utils import atomic_path, check_output_path
from sccluster._validation import is_disk_matrix, on_disk

from ._csr_h5 import write_csr_blocks

logger = logging.getLogger(__name__)


def write_h5ad(
    adata,
    path: str | os.PathLike,
    *,
    inputs: tuple[str | os.PathLike, ...] = (),
    compression: Literal["gzip", "lzf"] | None = None,
    results_only: bool = False,
) -> Path:
    """Write ``adata`` to ``path`` atomically (temporary file beside it, then rename).

    An on-disk ``X`` is never loaded (anndata's own writer reads each of its arrays into memory): a backed
    ``.h5ad``'s is copied by HDF5 chunk by chunk, a zarr store's is written block of rows by block of rows.

    Parameters
    ----------
    adata
        AnnData to write (in memory or backed).
    path
        Output ``.h5ad`` path. Its folder must exist.
    inputs
        Input paths that must not be overwritten. The file ``adata`` is backed by and the source
        recorded by :func:`sccluster.io.read` (``uns["sccluster_io"]["source"]``) are always added.
    compression
        ``None`` (default: fastest, larger file), ``"gzip"`` (smallest) or ``"lzf"``.
    results_only
        Leave out ``X`` and ``layers`` (the count matrices): the file holds ``obs``, ``var``, ``obsm``,
        ``varm``, ``obsp``, ``varp`` and ``uns`` only, for inputs too big to copy. Default ``False``.

    Returns
    -------
    The path written.

    Raises
    ------
    InputError
        The output is an input file, a folder, or not writable.
    """
    guarded = list(inputs)
    if getattr(adata, "isbacked", False) and adata.filename is not None:
        guarded.append(adata.filename)
    source = adata.uns.get("sccluster_io", {}).get("source") if hasattr(adata.uns, "get") else None
    if isinstance(source, str) and source:
        guarded.append(source)
    out = check_output_path(path, inputs=tuple(guarded))
    disk = on_disk(adata)
    if disk and adata.is_view:
        msg = "cannot write a view of a backed AnnData; write the whole object, or call .to_memory() on the view first"
        raise InputError(msg)
    with atomic_path(out) as tmp:
        if results_only or disk:
            _without_matrices(adata, keep_layers=not results_only).write_h5ad(tmp, compression=compression)
            if not results_only:
                _write_disk_matrices(adata, tmp)
        else:
            adata.write_h5ad(tmp, compression=compression)
    what = " (results only)" if results_only else ""
    logger.info("wrote %d cells x %d genes%s to %s", adata.n_obs, adata.n_vars, what, out)
    return out


def _without_matrices(adata, *, keep_layers: bool):
    """An in-memory AnnData with all of ``adata`` but ``X`` and the on-disk layers (no layer unless ``keep_layers``)."""
    import anndata as ad

    layers = {k: v for k, v in adata.layers.items() if not is_disk_matrix(v)} if keep_layers else None
    return ad.AnnData(
        obs=adata.obs, var=adata.var, uns=dict(adata.uns), obsm=dict(adata.obsm), varm=dict(adata.varm),
        obsp=dict(adata.obsp), varp=dict(adata.varp), layers=layers,
    )  # fmt: skip


def _write_disk_matrices(adata, target: str | os.PathLike) -> None:
    """Add the on-disk ``X``, layers and ``raw`` of ``adata`` to the ``.h5ad`` at ``target`` without loading them.

    A matrix in an HDF5 file is copied by HDF5 chunk by chunk; any other (a zarr store's) is written block of
    rows by block of rows. A backed file's ``raw`` is copied as it is in the file.
    """
    import h5py

    # anndata's backed X has no group of its own: it is copied from the file below, with raw (its X on disk)
    matrices = {"X": adata.X} if on_disk(adata) and not adata.isbacked else {}
    matrices.update({f"layers/{k}": v for k, v in adata.layers.items() if is_disk_matrix(v)})
    with h5py.File(target, "a") as dst:
        if adata.isbacked:
            with h5py.File(adata.filename, "r") as src:
                src.copy(src["X"], dst, name="X")
                if adata.raw is not None and "raw" in src:
                    src.copy(src["raw"], dst, name="raw")
        for name, matrix in matrices.items():
            group = getattr(matrix, "group", None)
            if isinstance(group, h5py.Group):
                group.file.copy(group, dst, name=name)
            else:
                _stream_rows(matrix, dst, name)


def _stream_rows(matrix, dst, name: str, rows: int = 4096) -> None:
    """Write an on-disk sparse ``matrix`` as the CSR element ``dst[name]``, ``rows`` rows at a time."""
    import scipy.sparse as sp

    n = matrix.shape[0]
    blocks = (sp.csr_matrix(matrix[start : start + rows]) for start in range(0, n, rows))
    write_csr_blocks(dst, name, blocks, tuple(matrix.shape))
