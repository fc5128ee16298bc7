"""Shared helpers of the plotting functions: checks, figures, colours, saving, subsampling.

Figures are plain :class:`matplotlib.figure.Figure` objects drawn on an Agg canvas: they are never
registered with ``pyplot``, so no window opens, the user's backend is left alone and nothing leaks.
matplotlib and scanpy are imported inside the functions (``import sccluster`` stays light).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sccluster._errors import InputError
from sccluster._utils import atomic_path, check_output_path
from sccluster._validation import check_adata
from sccluster.tl._markers import check_positive_int, natural_sort, subsample_per_group  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: Resolution of saved figures (dots per inch).
SAVE_DPI = 150
#: Formats ``save=`` accepts (the file's suffix chooses one).
SAVE_FORMATS = ("png", "pdf", "svg")


# --------------------------------------------------------------------------- checks
def check_key(adata, key: str) -> None:
    """Raise :class:`InputError` unless ``adata`` is an AnnData and ``key`` a non-empty string."""
    check_adata(adata)
    if not isinstance(key, str) or not key:
        msg = f"key must be a non-empty string, got {key!r}"
        raise InputError(msg)


def cluster_labels(adata, key: str) -> pd.Categorical:
    """The clusters in ``obs[key]`` as a categorical (a copy; ``adata`` is not changed).

    Categories keep their stored order (``"0"`` = largest cluster for :func:`sccluster.tl.cluster`);
    a column that is not categorical gets its labels as strings in natural order.
    """
    check_key(adata, key)
    if key not in adata.obs.columns:
        msg = (
            f"obs has no column {key!r}, so there is no clustering under key {key!r}; "
            f"run scc.tl.cluster(adata, key_added={key!r}) first or pass the key used (key=...)"
        )
        raise InputError(msg)
    col = adata.obs[key]
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = col.cat.categories
        return pd.Categorical(col.to_numpy(), categories=cats)
    text = col.astype("string").to_numpy(dtype=object, na_value=None)
    present = natural_sort({v for v in text if v is not None})
    return pd.Categorical(text, categories=present)


def label_column(adata, label_key: str) -> pd.Categorical:
    """Reference labels ``obs[label_key]`` as a categorical of strings (missing labels stay NaN)."""
    if not isinstance(label_key, str) or not label_key:
        msg = f"label_key must be an obs column name, got {label_key!r}"
        raise InputError(msg)
    if label_key not in adata.obs.columns:
        cols = ", ".join(map(str, list(adata.obs.columns)[:20])) or "none"
        msg = f"label_key {label_key!r} is not a column of obs; available obs columns: {cols}"
        raise InputError(msg)
    col = adata.obs[label_key]
    text = np.array([None if pd.isna(v) else str(v) for v in col.to_numpy(dtype=object)], dtype=object)
    present = {v for v in text if v is not None}
    if isinstance(col.dtype, pd.CategoricalDtype):  # keep the stored order of the categories
        cats = [c for c in dict.fromkeys(str(c) for c in col.cat.categories) if c in present]
    else:
        cats = natural_sort(present)
    return pd.Categorical(text, categories=cats)


def run_info(adata, key: str) -> dict[str, Any]:
    """``uns[key]`` as a dict (empty when absent or not a mapping)."""
    info = adata.uns.get(key) if hasattr(adata.uns, "get") else None
    return dict(info) if isinstance(info, Mapping) else {}


# --------------------------------------------------------------------------- figures
def new_figure(width: float, height: float) -> Figure:
    """A Figure on an Agg canvas (not managed by pyplot: it never opens a window)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def check_save(save: str | Path | None) -> Path | None:
    """Check ``save`` before any drawing: a writable path ending in .png, .pdf or .svg (or None)."""
    if save is None:
        return None
    if not isinstance(save, (str, Path)) or not str(save):
        msg = f"save must be a file path or None, got {save!r}"
        raise InputError(msg)
    path = check_output_path(save)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in SAVE_FORMATS:
        suffixes = ", ".join("." + f for f in SAVE_FORMATS)
        msg = f"save path {str(path)!r} must end in {suffixes}; choose a file name"
        raise InputError(msg)
    return path


def finish(fig: Figure, save: Path | None) -> Figure:
    """Write ``fig`` to ``save`` atomically (when given) and return it."""
    if save is not None:
        with atomic_path(save) as tmp:
            fig.savefig(tmp, format=save.suffix.lstrip(".").lower(), dpi=SAVE_DPI, bbox_inches="tight")
        logger.info("saved figure to %s", save)
    return fig


def png_bytes(fig: Figure, *, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for embedding in a report)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def cluster_colors(adata, key: str, categories) -> list[str]:
    """Colours of the clusters: ``uns[f"{key}_colors"]`` when it has one per category, else scanpy's palette.

    The palette rule is scanpy's (20, 28 or 102 colours by the number of categories), so a plot drawn
    here and ``sc.pl.umap(adata, color=key)`` colour the clusters alike.
    """
    from matplotlib.colors import to_hex
    from scanpy.plotting import palettes

    n = len(categories)
    stored = adata.uns.get(f"{key}_colors") if hasattr(adata.uns, "get") else None
    if stored is not None and len(stored) >= n:
        try:
            return [to_hex(c) for c in list(stored)[:n]]
        except ValueError:
            pass
    if n <= 20:
        pal = palettes.default_20
    elif n <= 28:
        pal = palettes.default_28
    elif n <= len(palettes.default_102):
        pal = palettes.default_102
    else:
        return ["#808080"] * n
    return [to_hex(c) for c in pal[:n]]


# --------------------------------------------------------------------------- sampling
def subsample(n: int, max_n: int, random_state: int) -> np.ndarray | None:
    """Sorted indices of a seeded subsample of ``max_n`` of ``n`` items, or None when ``n <= max_n``."""
    if n <= max_n:
        return None
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=max_n, replace=False))
