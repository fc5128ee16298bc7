"""``tl.markers``: marker genes of each group (scanpy's ``rank_genes_groups`` on a bounded subsample).

The machinery here (group labels, the log-normalisation check, the seeded per-group subsample and the
ranking on a private AnnData) is shared with :func:`sccluster.pl.markers`, which draws the dot plot of
the same ranking.
"""

from __future__ import annotations

import logging
import re
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sccluster._errors import InputError
from sccluster._utils import resolve_seed
from sccluster._validation import check_adata

logger = logging.getLogger(__name__)

#: Cells per group ``tl.markers`` tests at most by default (seeded subsample; bounds the cost at any size).
MAX_CELLS_PER_GROUP = 1000
#: Tests of ``sc.tl.rank_genes_groups`` ``tl.markers`` accepts (those that give fold changes and p-values).
METHODS = ("wilcoxon", "t-test", "t-test_overestim_var")
#: Columns of the tidy table ``tl.markers`` returns, in order.
COLUMNS = ["group", "rank", "gene", "score", "logfoldchange", "pval", "pval_adj", "frac_in", "frac_out"]
#: Rows of ``X`` inspected to tell raw counts from log-normalised values.
_PROBE_ROWS = 2000


# --------------------------------------------------------------------------- shared checks
def natural_sort(values) -> list:
    """Sort labels naturally: ``"2"`` before ``"10"``; non-numeric labels after, alphabetically."""

    def order(v):
        text = str(v)
        return (0, int(text), "") if re.fullmatch(r"-?\d+", text) else (1, 0, text)

    return sorted(values, key=order)


def group_labels(adata, groupby: str, *, option: str = "groupby") -> pd.Categorical:
    """The groups in ``obs[groupby]`` as a categorical of strings (a copy; ``adata`` is not changed).

    Categories keep their stored order when the column is categorical (``"0"`` = largest cluster for
    :func:`sccluster.tl.cluster`), else the labels in natural order; missing values stay NaN.
    ``option`` names the argument in error messages.
    """
    check_adata(adata)
    if not isinstance(groupby, str) or not groupby:
        msg = f"{option} must be a non-empty string, got {groupby!r}"
        raise InputError(msg)
    if groupby not in adata.obs.columns:
        msg = (
            f"obs has no column {groupby!r}, so there is no clustering under key {groupby!r}; "
            f"run scc.tl.cluster(adata, key_added={groupby!r}) first or pass the key used ({option}=...)"
        )
        raise InputError(msg)
    col = adata.obs[groupby]
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = [str(c) for c in col.cat.categories]
        text = np.array([None if pd.isna(v) else str(v) for v in col.to_numpy(dtype=object)], dtype=object)
        return pd.Categorical(text, categories=list(dict.fromkeys(cats)))
    text = col.astype("string").to_numpy(dtype=object, na_value=None)
    present = natural_sort({v for v in text if v is not None})
    return pd.Categorical(text, categories=present)


def _integer_valued(block) -> bool | None:
    """Whether every stored value of a row block is a whole number (None when the block has no values)."""
    data = block.data if sp.issparse(block) else np.asarray(block).ravel()
    data = data[data != 0]
    if data.size == 0:
        return None
    return bool(np.all(data == np.round(data)))


def check_lognormalised(adata, what: str) -> None:
    """Check that ``X`` holds log-normalised expression before ``what`` uses it.

    Accepted: ``uns["sccluster_prepare"]`` (written by :func:`sccluster.pp.prepare`) or ``uns["log1p"]``
    (scanpy's ``sc.pp.log1p``). Without either, a probe of the first rows decides: whole numbers only
    means raw counts, an :class:`InputError` saying to run ``scc.pp.prepare``; other values are
    accepted with a logged warning.
    """
    if adata.X is None or adata.n_vars == 0 or adata.n_obs == 0:
        msg = f"adata has no expression in X; {what} needs the log-normalised expression (run scc.pp.prepare)"
        raise InputError(msg)
    if "sccluster_prepare" in adata.uns or "log1p" in adata.uns:
        return
    block = adata.X[: min(_PROBE_ROWS, adata.n_obs)]
    block = block.to_memory() if hasattr(block, "to_memory") else block
    if _integer_valued(block):
        msg = (
            f"X holds raw counts (whole numbers, no uns['sccluster_prepare']); {what} needs the log-normalised "
            "expression: run scc.pp.prepare(adata) first (or 'sccluster cluster', which does)"
        )
        raise InputError(msg)
    logger.warning("%s: X is taken as log-normalised (no uns['sccluster_prepare'] or uns['log1p'])", what)


def subsample_per_group(codes: np.ndarray, max_per_group: int, random_state: int) -> np.ndarray:
    """Sorted indices keeping at most ``max_per_group`` items of each group (``codes`` < 0 dropped).

    Seeded by ``random_state`` (a fresh :class:`numpy.random.Generator`); groups in increasing code order.
    """
    rng = np.random.default_rng(random_state)
    keep = []
    for g in np.unique(codes[codes >= 0]):
        idx = np.flatnonzero(codes == g)
        if idx.size > max_per_group:
            idx = rng.choice(idx, size=max_per_group, replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise :class:`InputError` unless it is an integer >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        msg = f"{name} must be an integer >= {minimum}, got {value!r}"
        raise InputError(msg)
    return int(value)


# --------------------------------------------------------------------------- ranking
def private_subsample(
    adata,
    groupby: str,
    max_cells_per_group: int,
    seed: int,
    *,
    what: str = "markers",
    option: str = "groupby",
):
    """AnnData of a seeded subsample per group: ``X``, ``var_names`` and ``obs[groupby]``; one-cell groups dropped.

    At most ``max_cells_per_group`` cells of each group are copied (so the cost is bounded however many
    cells ``adata`` has); ``adata`` is not changed. Raises :class:`InputError` when fewer than two groups
    have at least two cells.
    """
    import anndata as ad

    labels = group_labels(adata, groupby, option=option)
    codes = labels.codes.copy()
    sizes = np.bincount(codes[codes >= 0], minlength=len(labels.categories))
    single = [str(c) for c, n in zip(labels.categories, sizes, strict=True) if n == 1]
    if single:
        logger.info("%s: skipped group(s) %s with a single cell (no test possible)", what, ", ".join(single))
    codes[np.isin(codes, np.flatnonzero(sizes < 2))] = -1
    kept = [c for c, n in zip(labels.categories, sizes, strict=True) if n >= 2]
    if len(kept) < 2:
        msg = (
            f"obs[{groupby!r}] has {len(kept)} group(s) with at least 2 cells; marker genes need at least "
            "2 such groups to compare"
        )
        raise InputError(msg)
    cells = subsample_per_group(codes, max_cells_per_group, seed)
    x = adata.X[cells]
    x = x.to_memory() if hasattr(x, "to_memory") else x
    x = sp.csr_matrix(x, dtype=np.float32) if sp.issparse(x) else np.asarray(x, dtype=np.float32)
    obs = pd.DataFrame(index=pd.RangeIndex(cells.size).astype(str))
    obs[groupby] = pd.Categorical(np.asarray(labels)[cells], categories=kept)
    private = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=adata.var_names.astype(str)))
    private.var_names_make_unique()
    private.uns["log1p"] = {"base": None}  # natural log1p, as pp.prepare writes it (checked by the caller)
    return private


def rank_private(
    private, groupby: str, *, method: str = "wilcoxon", n_genes: int | None = None, pts: bool = False
) -> None:
    """Run ``sc.tl.rank_genes_groups`` (each group against the rest) on a private AnnData, in place."""
    import scanpy as sc

    with warnings.catch_warnings():  # scanpy's notes on the private object (e.g. pandas fragmentation)
        warnings.simplefilter("ignore", category=pd.errors.PerformanceWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        sc.tl.rank_genes_groups(private, groupby, method=method, use_raw=False, n_genes=n_genes, pts=pts)


def _tidy(private, groupby: str, n_genes: int) -> pd.DataFrame:
    """The ranking in ``private.uns["rank_genes_groups"]`` as one row per (group, gene)."""
    res = private.uns["rank_genes_groups"]
    pts, pts_rest = res.get("pts"), res.get("pts_rest")
    groups = list(private.obs[groupby].cat.categories)
    frames = []
    for g in groups:
        genes = np.asarray(res["names"][g][:n_genes]).astype(str)
        frame = pd.DataFrame({
            "group": g,
            "rank": np.arange(1, genes.size + 1),
            "gene": genes,
            "score": np.asarray(res["scores"][g][:n_genes], dtype=np.float64),
            "logfoldchange": np.asarray(res["logfoldchanges"][g][:n_genes], dtype=np.float64),
            "pval": np.asarray(res["pvals"][g][:n_genes], dtype=np.float64),
            "pval_adj": np.asarray(res["pvals_adj"][g][:n_genes], dtype=np.float64),
            "frac_in": np.asarray(pts[g].reindex(genes), dtype=np.float64),
            "frac_out": np.asarray(pts_rest[g].reindex(genes), dtype=np.float64),
        })  # fmt: skip
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table["group"] = pd.Categorical(table["group"], categories=groups)
    return table[COLUMNS]


def markers(
    adata,
    *,
    groupby: str = "sccluster",
    n_genes: int = 25,
    method: str = "wilcoxon",
    max_cells_per_group: int = MAX_CELLS_PER_GROUP,
    random_state: int | None = 0,
    key_added: str | None = None,
) -> pd.DataFrame:
    """Marker genes of every group in ``obs[groupby]``: each group against all other cells.

    Runs scanpy's ``sc.tl.rank_genes_groups`` (``method``, each group against the rest) on the
    log-normalised ``X`` of a private, seeded subsample of at most ``max_cells_per_group`` cells per
    group, so the cost is bounded at any number of cells and the matrix is never densified as a whole.
    Groups of one cell are skipped (logged). Fractions of cells expressing a gene (value > 0) are those
    of the cells tested: ``frac_in`` in the group, ``frac_out`` in the other groups' tested cells.

    Parameters
    ----------
    adata
        AnnData with log-normalised ``X`` (after :func:`sccluster.pp.prepare`; raw counts raise
        :class:`InputError`), gene names in ``var_names`` and groups in ``obs[groupby]``.
    groupby
        obs column of the groups (default ``"sccluster"``, the clusters of :func:`sccluster.tl.cluster`).
    n_genes
        Top genes kept per group, 1 to the number of genes (default 25).
    method
        ``"wilcoxon"`` (default), ``"t-test"`` or ``"t-test_overestim_var"`` (scanpy's tests).
    max_cells_per_group
        Cells tested per group at most, >= 2 (default 1,000); larger groups are subsampled.
    random_state
        Seed of the subsample (default 0; ``None`` draws one).
    key_added
        uns entry the table is stored in (default ``f"{groupby}_markers"``).

    Returns
    -------
    Tidy :class:`pandas.DataFrame`, one row per (group, gene), groups in their stored order and genes
    by rank: ``group`` (categorical), ``rank`` (1 = best), ``gene``, ``score`` (the test statistic),
    ``logfoldchange`` (log2, scanpy's), ``pval``, ``pval_adj`` (Benjamini-Hochberg over genes within
    the group), ``frac_in``, ``frac_out``. The same table is stored in ``uns[key_added]`` (it survives
    ``write_h5ad``); nothing else in ``adata`` changes.
    """
    group_labels(adata, groupby)
    n_genes = check_positive_int(n_genes, "n_genes")
    if method not in METHODS:
        msg = f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}"
        raise InputError(msg)
    max_cells_per_group = check_positive_int(max_cells_per_group, "max_cells_per_group", minimum=2)
    seed = resolve_seed(random_state)
    if key_added is None:
        key_added = f"{groupby}_markers"
    if not isinstance(key_added, str) or not key_added:
        msg = f"key_added must be a non-empty string or None, got {key_added!r}"
        raise InputError(msg)
    check_lognormalised(adata, "markers")
    private = private_subsample(adata, groupby, max_cells_per_group, seed)
    n_genes = min(n_genes, private.n_vars)
    rank_private(private, groupby, method=method, n_genes=n_genes, pts=True)
    table = _tidy(private, groupby, n_genes)
    adata.uns[key_added] = table
    logger.info(
        "markers: top %d of %d genes in %d groups (%s, %d cells tested); table in uns[%r]",
        n_genes, private.n_vars, len(private.obs[groupby].cat.categories), method, private.n_obs, key_added,
    )  # fmt: skip
    return table.copy()
