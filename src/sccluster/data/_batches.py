"""Batch covariates (donors, samples, lanes, conditions) read from an ``obs`` column as integer codes.

:func:`read_batches` validates the column a user names as ``batch_key`` and returns one integer code
per cell (``(n_obs,)``, never a batch x cells object). At fit time it checks everything a batch
covariate needs; at predict time (``categories`` given) it maps the values to the training batches and
appends batches not seen in training after them. Labels are never involved.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sccluster._errors import InputError

from ._counts import CountSource
from ._scaling import Scaler

logger = logging.getLogger(__name__)

#: Fewest cells a training batch may have (its gene standard deviations need two).
MIN_BATCH_CELLS = 2
#: Fewest cells a batch not seen in training needs at predict time for its own scaling statistics; a
#: smaller new batch is scaled with the pooled training statistics instead.
MIN_NEW_BATCH_CELLS = 50
#: When the scaling statistics are fitted on a subsample, each batch contributes at least this many of
#: its cells (all of them when it has fewer), so a small batch still gets statistics of its own.
MIN_FIT_BATCH_CELLS = 1000


@dataclass
class BatchCodes:
    """Batch of every cell as an integer code.

    Attributes
    ----------
    key
        The ``obs`` column the batches were read from.
    categories
        Batch names (strings); code ``i`` is ``categories[i]``. At predict time the training batches
        come first, then the batches not seen in training.
    codes
        Code of every cell, ``int64`` of shape ``(n_obs,)``.
    n_cells
        Cells of each batch in these data, shape ``(len(categories),)``.
    n_known
        Number of leading categories that are training batches (all of them at fit time).
    """

    key: str
    categories: list[str]
    codes: np.ndarray
    n_cells: np.ndarray
    n_known: int

    @property
    def n_batches(self) -> int:
        return len(self.categories)

    @property
    def new_batches(self) -> list[str]:
        """Names of the batches not seen in training (empty at fit time)."""
        return self.categories[self.n_known :]


def _obs_columns(adata) -> str:
    cols = [str(c) for c in adata.obs.columns]
    if not cols:
        return "obs has no columns"
    shown = ", ".join(repr(c) for c in cols[:8]) + (f", ... ({len(cols)} in all)" if len(cols) > 8 else "")
    return f"available obs columns: {shown}"


def _names(values) -> np.ndarray:
    """Batch values as strings (categories of any dtype: ``1`` and ``"1"`` name the same batch)."""
    return np.asarray([str(v) for v in values], dtype=object)


def check_batch_key(adata, batch_key) -> None:
    """Raise :class:`InputError` unless ``batch_key`` is ``None`` or names a column of ``adata.obs``."""
    if batch_key is None:
        return
    if not isinstance(batch_key, str) or not batch_key:
        msg = f"batch_key must be the name of an obs column (a non-empty string) or None, got {batch_key!r}"
        raise InputError(msg)
    if batch_key not in adata.obs.columns:
        msg = f"batch_key {batch_key!r} is not a column of obs; {_obs_columns(adata)}"
        raise InputError(msg)


def read_batches(
    adata, batch_key: str, *, categories: Sequence[str] | None = None, warn: bool = True
) -> BatchCodes:
    """Read ``obs[batch_key]`` as one integer code per cell, with one-line :class:`InputError` on bad input.

    Parameters
    ----------
    adata
        AnnData (in memory or backed); only ``obs[batch_key]`` is read.
    batch_key
        Column of ``adata.obs`` naming each cell's batch (donor, sample, lane, condition, ...); any dtype,
        values compared as strings.
    categories
        ``None`` at fit time: the batches are the distinct values (unused categories of a categorical
        column are dropped), every cell must have one, every batch needs at least
        :data:`MIN_BATCH_CELLS` cells, and a single batch is allowed with a warning (``batch_key`` then
        has no effect). At predict time, the training batch names: cells of those batches get their
        training codes, and any other value becomes a new batch with a code after them (any size).
    warn
        Log the warning about a single batch (callers that only validate turn it off, so that the model
        that uses the batches warns once).

    Returns
    -------
    :class:`BatchCodes`.
    """
    import pandas as pd

    check_batch_key(adata, batch_key)
    column = adata.obs[batch_key]
    missing = column.isna().to_numpy()
    n_obs = len(column)
    if n_obs and missing.all():
        msg = f"obs[{batch_key!r}] has no values (all {n_obs:,} missing); choose the column that names each cell's batch"
        raise InputError(msg)
    if missing.any():
        msg = (
            f"obs[{batch_key!r}] is missing for {int(missing.sum()):,} of {n_obs:,} cells; fill them in "
            "(e.g. with an 'unknown' batch) or drop those cells, then retry"
        )
        raise InputError(msg)
    cat = pd.Categorical(column)
    if isinstance(column.dtype, pd.CategoricalDtype):
        cat = cat.remove_unused_categories()
    names = _names(cat.categories)
    codes = np.asarray(cat.codes, dtype=np.int64)
    if categories is None:
        n_cells = np.bincount(codes, minlength=len(names))
        if len(names) >= n_obs and n_obs > 1:
            msg = (
                f"obs[{batch_key!r}] has {len(names):,} distinct values for {n_obs:,} cells, so it names cells, not "
                "batches; give the column of samples, donors or conditions"
            )
            raise InputError(msg)
        small = np.flatnonzero(n_cells < MIN_BATCH_CELLS)
        if small.size:
            others = f" (and {small.size - 1} more batches)" if small.size > 1 else ""
            msg = (
                f"batch {names[small[0]]!r} of obs[{batch_key!r}] has {int(n_cells[small[0]])} cell{others}, but "
                f"every batch needs at least {MIN_BATCH_CELLS}; merge or drop the small batches and retry"
            )
            raise InputError(msg)
        if len(names) == 1 and warn:
            logger.warning(
                "batch_key %r: all cells are in one batch (%r), so batch_key has no effect",
                batch_key,
                names[0],
            )
        return BatchCodes(batch_key, [str(n) for n in names], codes, n_cells, len(names))

    known = [str(c) for c in categories]
    lookup = {name: i for i, name in enumerate(known)}
    new = [str(n) for n in names if str(n) not in lookup]
    for name in new:
        lookup[name] = len(lookup)
    remap = np.asarray([lookup[str(n)] for n in names], dtype=np.int64)
    codes = remap[codes] if len(codes) else codes
    all_names = known + new
    return BatchCodes(batch_key, all_names, codes, np.bincount(codes, minlength=len(all_names)), len(known))


def stratified_indices(
    codes: np.ndarray, base: np.ndarray, rng: np.random.Generator, *, min_per_batch: int = MIN_FIT_BATCH_CELLS
) -> np.ndarray:
    """``base`` (sorted cell positions) topped up so every batch has ``min(its size, min_per_batch)`` cells.

    For each batch with fewer of its cells in ``base``, cells of that batch not in ``base`` are drawn at
    random from ``rng``. Sorted positions; cost ``O(n log n)`` in the cells.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n_batches = int(codes.max()) + 1
    have = np.bincount(codes[base], minlength=n_batches)
    size = np.bincount(codes, minlength=n_batches)
    short = np.flatnonzero(have < np.minimum(size, min_per_batch))
    if not short.size:
        return base
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(size)])
    in_base = np.zeros(len(codes), dtype=bool)
    in_base[base] = True
    extra = []
    for b in short:
        cells = order[starts[b] : starts[b + 1]]
        pool = cells[~in_base[cells]]
        want = int(min(size[b], min_per_batch) - have[b])
        extra.append(rng.choice(pool, want, replace=False))
    return np.sort(np.concatenate([base, *extra]))


def scaler_for_batches(
    scaler: Scaler, source: CountSource, batches: BatchCodes, *, min_cells: int = MIN_NEW_BATCH_CELLS
) -> Scaler:
    """The training ``scaler`` extended to the batches of new data that were not seen in training.

    A new batch with at least ``min_cells`` cells in ``source`` is z-scored with its own statistics
    (fitted on its cells, streamed), so its batch effect is removed like a training batch's; a smaller
    one with the pooled training statistics (its own would be too noisy). Either way a warning is
    logged; the encoder takes no batch, so the cells embed and get labels as usual.
    """
    new = batches.new_batches
    if not new:
        return scaler
    sizes = batches.n_cells[batches.n_known :]
    mean = np.tile(scaler.mean, (len(new), 1))
    std = np.tile(scaler.std, (len(new), 1))
    own = np.flatnonzero(sizes >= min_cells)
    if own.size:
        rows = np.flatnonzero(np.isin(batches.codes, batches.n_known + own))
        fitted = Scaler.fit(
            source,
            max_value=scaler.max_value,
            indices=rows,
            batch_codes=batches.codes,
            n_batches=batches.n_batches,
        )
        assert fitted.batch_mean is not None and fitted.batch_std is not None  # fitted with batch_codes
        mean[own] = fitted.batch_mean[batches.n_known + own]
        std[own] = fitted.batch_std[batches.n_known + own]
    described = ", ".join(
        f"{name!r} ({int(n)} cells: {'own' if n >= min_cells else 'pooled training'} statistics)"
        for name, n in zip(new[:5], sizes[:5], strict=True)
    ) + (f", ... ({len(new)} in all)" if len(new) > 5 else "")
    logger.warning(
        "batch_key %r: %d batch%s not seen in training: %s; a new batch is scaled with its own gene statistics "
        "when it has at least %d cells, else with the pooled training statistics",
        batches.key, len(new), "" if len(new) == 1 else "es", described, min_cells,
    )  # fmt: skip
    return scaler.with_batches(mean, std)


def source_for_new_cells(
    adata,
    *,
    genes: Sequence[str] | np.ndarray,
    layer: str | None,
    reference_total: float | None,
    scaler: Scaler,
    batch_key: str | None,
    training_batches: Sequence[str] | None,
) -> tuple[CountSource, Scaler]:
    """The counts of new cells, as a fitted model reads them, and the scaler for them.

    Without training batches (``training_batches=None``) the model's own ``scaler``; with them, the
    batches are read from ``obs[batch_key]`` first (mapped to the training batches, new ones after them)
    and the scaler is extended to batches not seen in training (:func:`scaler_for_batches`).
    """
    batches = None
    if training_batches is not None:  # the training column, read before the counts
        assert batch_key is not None  # training batches were read from obs[batch_key]
        batches = read_batches(adata, batch_key, categories=list(training_batches))
    source = CountSource(
        adata, genes=list(genes), layer=layer, reference_total=reference_total,
        batch_codes=None if batches is None else batches.codes,
    )  # fmt: skip
    return source, (scaler if batches is None else scaler_for_batches(scaler, source, batches))
