"""Atomic ``.h5ad`` writer: the target appears complete or not at all."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from sccluster._utils import atomic_path, check_output_path

logger = logging.getLogger(__name__)


def write_h5ad(
    adata,
    path: str | os.PathLike,
    *,
    inputs: tuple[str | os.PathLike, ...] = (),
    compression: Literal["gzip", "lzf"] | None = None,
) -> Path:
    """Write ``adata`` to ``path`` atomically (temporary file beside it, then rename).

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
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp, compression=compression)
    logger.info("wrote %d cells x %d genes to %s", adata.n_obs, adata.n_vars, out)
    return out
