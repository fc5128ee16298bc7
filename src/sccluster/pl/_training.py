"""``pl.training``: loss curves from the training history ``uns[key]["history"]``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sccluster._errors import InputError

from ._common import check_key, check_save, finish, new_figure, run_info

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: History columns that index the rows rather than measure something.
INDEX_COLUMNS = ("step", "phase", "stage", "epoch")
#: Names of the phases of older SiameseClu histories (a float ``phase`` column instead of ``stage``).
PHASE_NAMES = {0: "pretraining", 1: "clustering"}


def history_table(adata, key: str) -> dict[str, np.ndarray]:
    """``uns[key]["history"]`` as equal-length numpy columns; InputError when there is none."""
    check_key(adata, key)
    info = run_info(adata, key)
    if not info:
        msg = (
            f"uns has no entry {key!r}, so there is no clustering run to plot; "
            "run scc.tl.cluster first or pass key=..."
        )
        raise InputError(msg)
    history = info.get("history")
    if not isinstance(history, Mapping) or not history:
        method = info.get("method", "this method")
        msg = (
            f"uns[{key!r}] has no training history ({method!r} does not train iteratively); "
            "training curves exist for deep methods such as 'bgformer' and 'siamese'"
        )
        raise InputError(msg)
    columns = {str(k): np.asarray(v).ravel() for k, v in history.items()}
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1 or 0 in lengths:
        msg = (
            f"uns[{key!r}]['history'] must hold equal-length, non-empty columns, "
            f"got lengths {sorted(lengths)}"
        )
        raise InputError(msg)
    return columns


def _groups(columns: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(name, row indices) of each stage / phase, in order of first appearance; one group without either."""
    n = len(next(iter(columns.values())))
    if "stage" in columns:
        split = np.asarray([str(s) for s in columns["stage"]], dtype=object)
    elif "phase" in columns:
        phase = columns["phase"].astype(np.float64)
        split = np.asarray(
            [PHASE_NAMES.get(int(p), f"phase {p:g}") if np.isfinite(p) else "" for p in phase], dtype=object
        )
    else:
        return [("training", np.arange(n))]
    names = list(dict.fromkeys(split.tolist()))
    return [(name or "training", np.flatnonzero(split == name)) for name in names]


def _quantities(columns: dict[str, np.ndarray]) -> list[str]:
    return [k for k, v in columns.items() if k not in INDEX_COLUMNS and v.dtype.kind in "fiub"]


def training(adata, *, key: str = "sccluster", save: str | Path | None = None) -> Figure:
    """Training curves: each numeric quantity of ``uns[key]["history"]`` against the step.

    One panel per training stage (the ``stage`` column; ``phase`` in older SiameseClu histories), one line per
    quantity (``loss`` and its terms); the x axis is the ``step`` column when there is one, else the
    row (logged step) number within the stage. A quantity that is zero or missing throughout a stage
    is not drawn there; the y axis is logarithmic when the values drawn in a panel are positive and span more
    than a factor of 20.

    Parameters
    ----------
    adata
        Clustered AnnData with ``uns[key]["history"]`` (a dict of equal-length columns, written by
        :func:`sccluster.tl.cluster` for iterative methods); not changed.
    key
        Key of the clustering (default ``"sccluster"``).
    save
        Also write the figure to this path (.png, .pdf or .svg), atomically. Default: not saved.

    Returns
    -------
    The matplotlib Figure.

    Raises
    ------
    InputError
        No ``uns[key]``, no history (e.g. for ``leiden`` or ``kmeans``), or nothing numeric in it.
    """
    columns = history_table(adata, key)
    out = check_save(save)
    quantities = _quantities(columns)
    if not quantities:
        msg = f"uns[{key!r}]['history'] has no numeric column to plot (columns: {', '.join(columns)})"
        raise InputError(msg)
    groups = _groups(columns)
    colors = {q: f"C{i % 10}" for i, q in enumerate(quantities)}
    method = run_info(adata, key).get("method", key)

    fig = new_figure(4.8 * len(groups) + 0.8, 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(groups), squeeze=False)).ravel()
    drawn = 0
    for ax, (name, rows) in zip(axes, groups, strict=True):
        step = columns["step"][rows].astype(np.float64) if "step" in columns else None
        x = step if step is not None and np.all(np.isfinite(step)) else np.arange(1, rows.size + 1)
        values = []
        for q in quantities:
            y = columns[q][rows].astype(np.float64)
            finite = np.isfinite(y)
            if not finite.any() or np.all(y[finite] == 0):
                continue
            ax.plot(
                x,
                y,
                color=colors[q],
                label=q,
                linewidth=1.3,
                marker="o" if rows.size < 20 else None,
                markersize=3,
            )
            values.append(y[finite])
            drawn += 1
        drawn_values = np.concatenate(values) if values else np.zeros(0)
        if drawn_values.size and drawn_values.min() > 0 and drawn_values.max() / drawn_values.min() > 20:
            ax.set_yscale("log")  # quantities of very different sizes (e.g. a loss and a small KL term)
        ax.set_title(f"{name} ({rows.size} logged steps)", fontsize=10)
        ax.set_xlabel("step" if step is not None else "logged step")
        ax.spines[["top", "right"]].set_visible(False)
        if values:
            ax.legend(fontsize=8, frameon=False)
    if not drawn:
        msg = f"uns[{key!r}]['history'] holds only zeros or missing values; nothing to plot"
        raise InputError(msg)
    axes[0].set_ylabel("value")
    fig.suptitle(f"{method} training")
    fig.tight_layout()
    return finish(fig, out)
