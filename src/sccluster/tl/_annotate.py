"""``tl.annotate``: name clusters after marker gene sets, with a background test per cluster and set.

The statistic (decision record 0014):

1. One streamed pass over the log-normalised ``X`` (row chunks of the sparse matrix; never a dense
   cells x genes array) gives every gene's overall mean ``mu_g`` and standard deviation ``sd_g`` over all
   cells and each cluster's mean ``m_cg``. The standardised cluster profile is
   ``z_cg = (m_cg - mu_g) / sd_g`` (0 for genes that do not vary).
2. A set ``T`` (its genes present in the data) scores ``S_cT = mean_{g in T} z_cg`` in cluster ``c``.
3. Background (scanpy ``score_genes``-style): genes are binned by ``mu_g`` into ``n_bins`` equal-count
   bins; a background set replaces each marker gene by a random gene of its own bin (the set's genes
   excluded), so it has the same size and expression levels. ``n_background`` background sets are drawn
   per marker set (seeded :class:`numpy.random.Generator`), the same draws for every cluster.
4. ``score = S_cT - E[S_cT | background]`` (the exact background mean, so the per-cell scores average
   to it), ``z = score / sd(background)``, empirical ``p = (1 + #{background >= S_cT}) / (1 + B)``;
   ``pval_adj``: Benjamini-Hochberg over every (cluster, set) pair tested.
5. A cluster's call is its highest-scoring set among those with ``pval_adj <= alpha`` (0.05) and
   ``score >= min_score`` (0.1) and ``score > 0``; none: ``"unassigned"``. The runner-up is the highest-scoring other set,
   ``margin = score - runner_up_score``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sccluster._errors import InputError
from sccluster._utils import progress, resolve_seed
from sccluster._version import __version__
from sccluster.pp._stream import iter_chunks

from ._marker_sets import UNASSIGNED, MarkerSets, load_markers
from ._markers import check_lognormalised, check_positive_int, group_labels

logger = logging.getLogger(__name__)

#: Default false-discovery rate of a call (Benjamini-Hochberg over all cluster x set tests).
ALPHA = 0.05
#: Default least score (mean standardised expression above the matched background) of a call.
MIN_SCORE = 0.1
#: Default number of expression bins the background genes are matched in (scanpy's score_genes uses 25).
N_BINS = 25
#: Least and most background sets drawn per marker set when ``n_background`` is automatic.
MIN_BACKGROUND, MAX_BACKGROUND = 1000, 20000
#: Background sets scored at once (bounds the memory to clusters x this x set size).
_DRAW_BLOCK = 1000
#: Markers listed per set in the log message about missing genes.
_MAX_LISTED = 10


# --------------------------------------------------------------------------- gene matching
def _match(sets: dict[str, list[str]], var_names: pd.Index, ignore_case: bool):
    """Per set: data column of each marker found (first occurrence; exact before case-insensitive), names missing."""
    names = [str(v) for v in var_names]
    exact: dict[str, int] = {}
    for i, name in enumerate(names):
        exact.setdefault(name, i)
    folded: dict[str, int] = {}
    if ignore_case:
        for i, name in enumerate(names):
            folded.setdefault(name.casefold(), i)
    found: dict[str, list[int]] = {}
    missing: dict[str, list[str]] = {}
    for cell_type, genes in sets.items():
        cols: list[int] = []
        miss: list[str] = []
        for gene in genes:
            j = exact.get(gene)
            if j is None and ignore_case:
                j = folded.get(gene.casefold())
            if j is None:
                miss.append(gene)
            elif j not in cols:
                cols.append(j)
        found[cell_type], missing[cell_type] = cols, miss
    return found, missing


def _no_marker_message(markers: MarkerSets, var_names: pd.Index, ignore_case: bool) -> str:
    genes = list(dict.fromkeys(g for gs in markers.sets.values() for g in gs))
    example = ", ".join(repr(g) for g in genes[:3])
    data = ", ".join(repr(str(v)) for v in var_names[:3])
    hint = "check the species and that var_names are gene symbols (not Ensembl IDs), or give other markers"
    if not ignore_case:
        folded = {str(v).casefold() for v in var_names}
        n_case = sum(g.casefold() in folded for g in genes)
        if n_case:
            hint = f"{n_case} match when case is ignored: pass ignore_case=True (--ignore-case)"
    return (
        f"none of the {len(genes)} marker genes of {markers.source} ({len(markers.sets)} cell types; e.g. {example}) "
        f"is in var_names (e.g. {data}); {hint}"
    )


# --------------------------------------------------------------------------- statistics
def _cluster_profiles(x, codes: np.ndarray, n_groups: int):
    """Streamed pass: per-cluster means (groups x genes), overall mean and std per gene, cluster sizes."""
    n_obs, n_vars = x.shape
    sums = np.zeros((n_groups, n_vars), dtype=np.float64)
    total = np.zeros(n_vars, dtype=np.float64)
    total_sq = np.zeros(n_vars, dtype=np.float64)
    for start, stop, block in iter_chunks(x, n_obs, desc="annotate: cluster means"):
        data = block.data.astype(np.float64)
        total += np.bincount(block.indices, weights=data, minlength=n_vars)
        total_sq += np.bincount(block.indices, weights=data * data, minlength=n_vars)
        c = codes[start:stop]
        rows = np.flatnonzero(c >= 0)
        if rows.size:
            ind = sp.csr_matrix((np.ones(rows.size), (c[rows], rows)), shape=(n_groups, stop - start))
            sums += (ind @ block).toarray()
    sizes = np.bincount(codes[codes >= 0], minlength=n_groups).astype(np.float64)
    mean = total / n_obs
    var = np.maximum(total_sq / n_obs - mean * mean, 0.0)
    sd = np.sqrt(var)
    return sums / sizes[:, None], mean, sd, sizes.astype(np.int64)


def _expression_bins(mean: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-count bins of the genes by mean expression (0 = lowest), as scanpy's score_genes bins by rank."""
    order = np.argsort(mean, kind="stable")
    bins = np.empty(mean.size, dtype=np.int64)
    bins[order] = np.arange(mean.size) * n_bins // mean.size
    return bins


def _pools(cols: list[int], bins: np.ndarray) -> list[np.ndarray]:
    """For each marker column, the genes of its expression bin that are not in the set (else all others)."""
    in_set = np.zeros(bins.size, dtype=bool)
    in_set[cols] = True
    pools = []
    for j in cols:
        pool = np.flatnonzero((bins == bins[j]) & ~in_set)
        if pool.size == 0:  # a bin made only of the set's genes (tiny gene universes): any other gene
            pool = np.flatnonzero(~in_set)
        if pool.size == 0:
            pool = np.asarray([j])
        pools.append(pool)
    return pools


def _weights(cols: list[int], pools: list[np.ndarray], n_vars: int) -> np.ndarray:
    """Gene weights ``a`` with ``z_c @ a`` = set mean minus its exact background mean."""
    a = np.zeros(n_vars, dtype=np.float64)
    n = len(cols)
    for j, pool in zip(cols, pools, strict=True):
        a[j] += 1.0 / n
        np.add.at(a, pool, -1.0 / (n * pool.size))
    return a


def _background(z: np.ndarray, cols: list[int], pools: list[np.ndarray], n_draws: int, rng) -> tuple:
    """Background set means per cluster: their standard deviation and how many reach the set's own mean."""
    observed = z[:, cols].mean(axis=1)
    count = np.zeros(z.shape[0], dtype=np.int64)
    s1 = np.zeros(z.shape[0], dtype=np.float64)
    s2 = np.zeros(z.shape[0], dtype=np.float64)
    done = 0
    while done < n_draws:
        b = min(_DRAW_BLOCK, n_draws - done)
        idx = np.stack([pool[rng.integers(0, pool.size, size=b)] for pool in pools], axis=1)  # (b, n)
        means = z[:, idx].mean(axis=2)  # (clusters, b)
        count += (means >= observed[:, None] - 1e-12).sum(axis=1)
        s1 += means.sum(axis=1)
        s2 += (means * means).sum(axis=1)
        done += b
    mean = s1 / n_draws
    sd = np.sqrt(np.maximum(s2 / n_draws - mean * mean, 0.0))
    pval = (1.0 + count) / (1.0 + n_draws)
    return sd, pval


def bh_adjust(pvals: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (same shape; NaN entries stay NaN and are not counted)."""
    p = np.asarray(pvals, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.flatnonzero(~np.isnan(flat))
    if ok.size == 0:
        return out
    order = ok[np.argsort(flat[ok], kind="stable")]
    m = ok.size
    ranked = flat[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    res = out.ravel()
    res[order] = np.minimum(ranked, 1.0)
    return res.reshape(p.shape)


def _auto_background(n_tests: int, alpha: float) -> int:
    """Draws so that one test alone can pass Benjamini-Hochberg: smallest p 1/(B+1) <= alpha / tests."""
    return int(min(MAX_BACKGROUND, max(MIN_BACKGROUND, math.ceil(n_tests / alpha))))


def _cell_scores(
    x, codes: np.ndarray, calls: np.ndarray, weights: np.ndarray, mean: np.ndarray, inv_sd: np.ndarray
) -> np.ndarray:
    """Each cell's score for its cluster's call (NaN when unassigned): a streamed ``X @ weights``.

    ``weights`` is genes x calls (the ``_weights`` of each called set); cell ``i`` of cluster ``c`` scores
    ``((x_i - mu) / sd) @ weights[:, calls[c]]``, whose mean over the cluster is the cluster's score.
    """
    n_obs = x.shape[0]
    out = np.full(n_obs, np.nan, dtype=np.float64)
    if weights.shape[1] == 0:
        return out
    scaled = weights * inv_sd[:, None]
    offset = mean @ scaled
    for start, stop, block in iter_chunks(x, n_obs, desc="annotate: cell scores"):
        c = codes[start:stop]
        col = np.where(c >= 0, calls[np.maximum(c, 0)], -1)
        rows = np.flatnonzero(col >= 0)
        if rows.size:
            s = np.asarray(block[rows] @ scaled) - offset
            out[start + rows] = s[np.arange(rows.size), col[rows]]
    return out


# --------------------------------------------------------------------------- checks
def _check_fraction(value, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not 0 < float(value) <= 1
    ):
        msg = f"{name} must be a number in (0, 1], got {value!r}"
        raise InputError(msg)
    return float(value)


def _check_number(value, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not np.isfinite(value)
    ):
        msg = f"{name} must be a finite number, got {value!r}"
        raise InputError(msg)
    return float(value)


def _check_keys(adata, groupby: str, key_added: str) -> None:
    if not isinstance(key_added, str) or not key_added:
        msg = f"key_added must be a non-empty string, got {key_added!r}"
        raise InputError(msg)
    if groupby in (key_added, f"{key_added}_score"):
        msg = f"key_added {key_added!r} would overwrite the clusters in obs[{groupby!r}]; choose another key_added"
        raise InputError(msg)


# --------------------------------------------------------------------------- annotate
def annotate(
    adata,
    markers,
    *,
    groupby: str = "sccluster",
    key_added: str = "cell_type",
    ignore_case: bool = False,
    alpha: float = ALPHA,
    min_score: float = MIN_SCORE,
    min_markers: int = 1,
    n_background: int | None = None,
    n_bins: int = N_BINS,
    random_state: int | None = 0,
) -> pd.DataFrame:
    """Name each cluster after the marker set it expresses best, or ``"unassigned"`` when none fits.

    Every cluster is scored against every marker set (decision record 0014): per gene, the cluster's
    standardised mean ``z = (cluster mean - overall mean) / overall std`` of the log-normalised ``X``
    (one streamed pass over sparse row chunks); a set scores the mean ``z`` of its genes present, minus
    the mean of background sets of the same size whose genes are drawn from the same expression bins
    (equal-count bins of mean expression, as scanpy's ``score_genes``). The background also gives
    ``z`` (score / background std) and an empirical p-value, adjusted by Benjamini-Hochberg over all
    (cluster, set) tests. A cluster's call is its highest-scoring set with ``pval_adj <= alpha`` and
    ``score >= min_score``. Labels in ``obs`` are never read; only ``obs[groupby]`` and the markers.

    Parameters
    ----------
    adata
        AnnData with log-normalised ``X`` (after :func:`sccluster.pp.prepare`; raw counts raise
        :class:`InputError`), gene symbols in ``var_names`` and clusters in ``obs[groupby]``.
    markers
        ``{cell type: [genes]}``, the name of a shipped set (:func:`marker_sets`: ``"human_pbmc"``,
        ``"human_pancreas"``, ``"mouse_pbmc"``, ``"mouse_pancreas"``) or a ``.csv`` (``cell_type,gene``),
        ``.tsv``, ``.gmt`` or ``.json`` file (:func:`read_markers`).
    groupby
        obs column of the clusters (default ``"sccluster"``).
    key_added
        Where the results go (default ``"cell_type"``; an existing obs column of that name is replaced,
        with a logged warning).
    ignore_case
        Match marker genes to ``var_names`` ignoring case (``"CD3E"`` finds ``"Cd3e"``); exact matches
        win. Default False.
    alpha
        False-discovery rate of a call, in (0, 1] (default 0.05).
    min_score
        Least score of a call (mean standardised expression above the matched background; default 0.1,
        decision record 0014). A call also needs a positive score whatever ``min_score`` is.
    min_markers
        Sets with fewer marker genes in the data are not tested (reported), >= 1 (default 1).
    n_background
        Background sets drawn per marker set, >= 100; default ``None``: ``ceil(tests / alpha)`` clamped
        to 1,000-20,000, so that a single test can pass the correction.
    n_bins
        Expression bins the background genes are matched in, >= 1 (default 25).
    random_state
        Seed of the background draws (default 0; ``None`` draws one).

    Returns
    -------
    Per-cluster DataFrame (also in ``uns[key_added]``), one row per non-empty cluster in stored order:
    ``cluster``, ``n_cells``, ``cell_type`` (the call or ``"unassigned"``), ``best_match`` (the set the
    statistics describe: the call, or the highest-scoring set of an unassigned cluster), ``score``,
    ``z``, ``pval``, ``pval_adj``, ``runner_up``, ``runner_up_score``, ``margin``, ``n_markers`` (of
    ``best_match``), ``n_found``, ``markers_found`` (genes of ``best_match`` in the data, by decreasing
    ``z`` in the cluster, ``", "``-joined) and ``markers_missing``. Also writes ``obs[key_added]``
    (categorical; NaN where ``obs[groupby]`` is missing), ``obs[key_added + "_score"]`` (each cell's
    score for its cluster's call, whose mean over the cluster is the cluster's score; NaN when
    unassigned) and ``uns[key_added + "_details"]``: ``params``, ``scores`` (every cluster x set test)
    and ``sets`` (per set: markers, found, missing). Nothing else in ``adata`` changes.
    """
    labels = group_labels(adata, groupby)
    _check_keys(adata, groupby, key_added)
    if not isinstance(ignore_case, (bool, np.bool_)):
        msg = f"ignore_case must be True or False, got {ignore_case!r}"
        raise InputError(msg)
    alpha = _check_fraction(alpha, "alpha")
    min_score = _check_number(min_score, "min_score")
    min_markers = check_positive_int(min_markers, "min_markers")
    n_bins = check_positive_int(n_bins, "n_bins")
    if n_background is not None:
        n_background = check_positive_int(n_background, "n_background", minimum=100)
    seed = resolve_seed(random_state)
    marker_sets = load_markers(markers)
    check_lognormalised(adata, "annotate")

    found, missing = _match(marker_sets.sets, adata.var_names, bool(ignore_case))
    if not any(found.values()):
        raise InputError(_no_marker_message(marker_sets, adata.var_names, bool(ignore_case)))
    n_missing = sum(len(m) for m in missing.values())
    if n_missing:
        listed = "; ".join(
            f"{t}: {', '.join(m[:_MAX_LISTED])}"
            + (f" (+{len(m) - _MAX_LISTED} more)" if len(m) > _MAX_LISTED else "")
            for t, m in missing.items()
            if m
        )
        n_all = sum(len(g) for g in marker_sets.sets.values())
        logger.warning(
            "annotate: %d of %d marker genes of %s are not in the data (%s)",
            n_missing,
            n_all,
            marker_sets.source,
            listed,
        )
    tested = [t for t in marker_sets.sets if len(found[t]) >= min_markers]
    skipped = [t for t in marker_sets.sets if t not in tested]
    if skipped:
        few = "no marker gene" if min_markers == 1 else f"fewer than {min_markers} marker genes"
        logger.warning("annotate: not tested (%s in the data): %s", few, ", ".join(skipped))
    if not tested:
        msg = (
            f"no cell type of {marker_sets.source} has {min_markers} marker gene(s) in the data; lower min_markers "
            "or give markers named as in var_names"
        )
        raise InputError(msg)

    codes = labels.codes.astype(np.int64)
    present = np.flatnonzero(np.bincount(codes[codes >= 0], minlength=len(labels.categories)) > 0)
    if present.size == 0:
        msg = f"obs[{groupby!r}] has no cluster labels (all missing); cluster the cells first"
        raise InputError(msg)
    remap = np.full(len(labels.categories), -1, dtype=np.int64)
    remap[present] = np.arange(present.size)
    codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    clusters = [str(labels.categories[i]) for i in present]

    profile, mean, sd, sizes = _cluster_profiles(adata.X, codes, len(clusters))
    inv_sd = np.divide(1.0, sd, out=np.zeros_like(sd), where=sd > 1e-12)
    z = (profile - mean) * inv_sd  # clusters x genes
    bins = _expression_bins(mean, n_bins)
    n_tests = len(clusters) * len(tested)
    draws = n_background if n_background is not None else _auto_background(n_tests, alpha)
    rng = np.random.default_rng(seed)

    k, t = len(clusters), len(tested)
    score = np.zeros((k, t))
    zscore = np.zeros((k, t))
    pval = np.ones((k, t))
    weights = np.zeros((adata.n_vars, t))
    for j, cell_type in enumerate(
        progress(tested, desc="annotate: background", disable=k * t * draws < 20_000_000, leave=False)
    ):
        cols = found[cell_type]
        pools = _pools(cols, bins)
        weights[:, j] = _weights(cols, pools, adata.n_vars)
        score[:, j] = z @ weights[:, j]
        bg_sd, pval[:, j] = _background(z, cols, pools, draws, rng)
        zscore[:, j] = np.divide(score[:, j], bg_sd, out=np.full(k, np.nan), where=bg_sd > 1e-12)
    padj = bh_adjust(pval)

    passes = (padj <= alpha) & (score >= min_score) & (score > 0)
    call = np.full(k, -1, dtype=np.int64)
    best = np.zeros(k, dtype=np.int64)
    runner = np.full(k, -1, dtype=np.int64)
    for c in range(k):
        order = np.argsort(-score[c], kind="stable")
        ok = [j for j in order if passes[c, j]]
        best[c] = ok[0] if ok else order[0]
        call[c] = ok[0] if ok else -1
        others = [j for j in order if j != best[c]]
        runner[c] = others[0] if others else -1

    def found_sorted(c: int, j: int) -> str:
        cols = found[tested[j]]
        names = adata.var_names[cols].astype(str)
        return ", ".join(names[np.argsort(-z[c, cols], kind="stable")])

    rows = []
    for c in range(k):
        j, r = best[c], runner[c]
        rows.append({
            "cluster": clusters[c],
            "n_cells": int(sizes[c]),
            "cell_type": tested[j] if call[c] >= 0 else UNASSIGNED,
            "best_match": tested[j],
            "score": float(score[c, j]),
            "z": float(zscore[c, j]),
            "pval": float(pval[c, j]),
            "pval_adj": float(padj[c, j]),
            "runner_up": tested[r] if r >= 0 else "",
            "runner_up_score": float(score[c, r]) if r >= 0 else np.nan,
            "margin": float(score[c, j] - score[c, r]) if r >= 0 else np.nan,
            "n_markers": len(marker_sets.sets[tested[j]]),
            "n_found": len(found[tested[j]]),
            "markers_found": found_sorted(c, j),
            "markers_missing": ", ".join(missing[tested[j]]),
        })  # fmt: skip
    table = pd.DataFrame(rows)

    # per cell: the call of its cluster, and its own score for that call
    called = [j for j in range(t) if (call == j).any()]
    column_of = {j: i for i, j in enumerate(called)}
    calls = np.asarray([column_of[call[c]] if call[c] >= 0 else -1 for c in range(k)], dtype=np.int64)
    cell_score = _cell_scores(adata.X, codes, calls, weights[:, called], mean, inv_sd)
    names = np.asarray(table["cell_type"], dtype=object)
    categories = [tested[j] for j in called] + ([UNASSIGNED] if (call < 0).any() else [])
    # numpy's stubs take no None in where(); it is a valid object-array value here
    per_cell = np.where(codes >= 0, names[np.maximum(codes, 0)], None)  # type: ignore[call-overload]
    if key_added in adata.obs.columns and f"{key_added}_details" not in adata.uns:
        logger.warning("annotate: obs[%r] already exists and is replaced by the annotation", key_added)
    adata.obs[key_added] = pd.Categorical(per_cell, categories=categories)
    adata.obs[f"{key_added}_score"] = cell_score.astype(np.float32)

    scores = pd.DataFrame({
        "cluster": np.repeat(clusters, t),
        "cell_type": np.tile(np.asarray(tested, dtype=object), k),
        "n_found": np.tile([len(found[x]) for x in tested], k),
        "score": score.ravel(), "z": zscore.ravel(), "pval": pval.ravel(), "pval_adj": padj.ravel(),
        "passes": passes.ravel(),
    })  # fmt: skip
    sets_table = pd.DataFrame({
        "cell_type": list(marker_sets.sets),
        "n_markers": [len(g) for g in marker_sets.sets.values()],
        "n_found": [len(found[x]) for x in marker_sets.sets],
        "tested": [x in tested for x in marker_sets.sets],
        "markers_found": [", ".join(adata.var_names[found[x]].astype(str)) for x in marker_sets.sets],
        "markers_missing": [", ".join(missing[x]) for x in marker_sets.sets],
    })  # fmt: skip
    params: dict[str, Any] = {
        "markers": marker_sets.source, "groupby": groupby, "ignore_case": bool(ignore_case), "alpha": alpha,
        "min_score": min_score, "min_markers": min_markers, "n_background": int(draws), "n_bins": n_bins,
        "seed": seed, "sccluster_version": __version__,
    }  # fmt: skip
    if marker_sets.references:
        params["references"] = np.asarray(marker_sets.references, dtype=object)
    adata.uns[key_added] = table
    adata.uns[f"{key_added}_details"] = {"params": params, "scores": scores, "sets": sets_table}
    n_called = int((call >= 0).sum())
    logger.info(
        "annotate: %d of %d clusters named (%d cell types tested, %d background sets each); obs[%r], table in uns[%r]",
        n_called, k, t, draws, key_added, key_added,
    )  # fmt: skip
    return table.copy()
