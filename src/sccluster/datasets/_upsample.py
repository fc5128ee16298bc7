"""Scale datasets: upsample a labelled count matrix by summing same-type pairs and thinning.

Each new cell draws a cell type with probability equal to its frequency, picks two distinct real
cells of that type, sums their counts and keeps each count with probability ``thinning``
(binomial thinning). The label stays true, library sizes stay close to the source's (for
``thinning=0.5``), and new cells are not copies of real ones, so kNN graphs do not fragment into
cliques of duplicates. Built chunk by chunk on CSR and assembled into one preallocated CSR matrix,
so peak memory is about the output plus one chunk.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sccluster._errors import InputError
from sccluster._utils import progress, resolve_seed
from sccluster._validation import check_counts_block, is_disk_matrix

logger = logging.getLogger(__name__)

#: Rows generated per chunk.
DEFAULT_CHUNK = 50_000
_MAX_RETHIN = 20


def _source_counts(adata, layer: str | None) -> tuple[sp.csr_matrix, str]:
    if layer is not None and layer != "X":
        if layer not in adata.layers:
            msg = f"layer {layer!r} not found; available layers: {', '.join(adata.layers) or 'none'}"
            raise InputError(msg)
        matrix, where = adata.layers[layer], f"layers[{layer!r}]"
    elif layer is None and not adata.isbacked and "counts" in adata.layers:
        matrix, where = adata.layers["counts"], "layers['counts']"
    else:
        matrix, where = adata.X, "X"
    if is_disk_matrix(matrix) or (
        adata.isbacked and where == "X"
    ):  # a backed or lazily read matrix is loaded
        matrix = matrix.to_memory() if hasattr(matrix, "to_memory") else matrix[()]
    X = sp.csr_matrix(matrix, dtype=np.float32, copy=True)  # never share arrays with the caller's matrix
    X.sum_duplicates()
    check_counts_block(X, where)
    return X, where


def _thin(S: sp.csr_matrix, thinning: float, rng: np.random.Generator) -> None:
    """Binomially thin ``S`` in place; rows left empty are re-drawn (then kept unthinned)."""
    summed = S.data.astype(np.int64)
    S.data = rng.binomial(summed, thinning).astype(np.float32)
    row_of = np.repeat(np.arange(S.shape[0]), np.diff(S.indptr))
    for attempt in range(_MAX_RETHIN + 1):
        totals = np.bincount(row_of, weights=S.data, minlength=S.shape[0])
        empty = np.flatnonzero(totals == 0)
        if empty.size == 0:
            break
        pos = np.isin(row_of, empty)
        if attempt == _MAX_RETHIN:
            S.data[pos] = summed[pos]
        else:
            S.data[pos] = rng.binomial(summed[pos], thinning)
    S.eliminate_zeros()


class _CsrBuilder:
    """Append CSR row chunks into growing flat arrays, so only the output and one chunk live at once.

    Arrays grow and shrink with ``ndarray.resize`` (``realloc``; large blocks are remapped, not
    copied, on Linux), so peak memory stays near the size of the result.
    """

    def __init__(self, n_rows: int, n_genes: int) -> None:
        self.n_genes = n_genes
        self.nnz = 0
        self.row = 0
        self.data = np.empty(0, dtype=np.float32)
        small = n_genes < np.iinfo(np.int32).max
        self.indices = np.empty(0, dtype=np.int32 if small else np.int64)
        self.indptr = np.zeros(n_rows + 1, dtype=np.int64)

    def append(self, chunk: sp.csr_matrix) -> None:
        k, m = chunk.nnz, chunk.shape[0]
        need = self.nnz + k
        if need > self.data.size:
            rows_left = self.indptr.size - 1 - self.row - m
            capacity = need + int(1.1 * k / max(m, 1) * rows_left) + 1
            self.data.resize(capacity, refcheck=False)
            self.indices.resize(capacity, refcheck=False)
        self.data[self.nnz : need] = chunk.data
        self.indices[self.nnz : need] = chunk.indices
        self.indptr[self.row + 1 : self.row + m + 1] = chunk.indptr[1:] + self.nnz
        self.nnz, self.row = need, self.row + m

    def finish(self) -> sp.csr_matrix:
        """The assembled matrix (index arrays share one dtype, so scipy does not copy them)."""
        self.data.resize(self.nnz, refcheck=False)
        self.indices.resize(self.nnz, refcheck=False)
        indptr: np.ndarray
        indices: np.ndarray
        if self.nnz < np.iinfo(np.int32).max and self.indices.dtype == np.int32:
            indptr, indices = self.indptr.astype(np.int32), self.indices
        else:
            indptr, indices = self.indptr, self.indices.astype(np.int64, copy=False)
        shape = (self.indptr.size - 1, self.n_genes)
        return sp.csr_matrix((self.data, indices, indptr), shape=shape, copy=False)


def upsample(
    adata,
    n_cells: int,
    seed: int | None = 0,
    *,
    label_key: str = "cell_type",
    thinning: float = 0.5,
    chunk_size: int = DEFAULT_CHUNK,
    layer: str | None = None,
):
    """Make ``n_cells`` new, distinct, correctly labelled cells from a labelled count matrix.

    Parameters
    ----------
    adata
        Source AnnData with raw counts (``layers["counts"]`` if present, else ``X``, or ``layer``)
        and labels in ``obs[label_key]``. A backed source is loaded into memory first.
    n_cells
        Number of cells to make.
    seed
        Seed of the generator (0 to 2**32 - 1; ``None`` draws one); the same seed (and ``chunk_size``)
        gives an identical result.
    label_key
        obs column with the cell types. Types with fewer than two cells are not sampled.
    thinning
        Probability of keeping each count of the summed pair (0.5 keeps library sizes comparable).
    chunk_size
        New cells built at once (bounds the working memory).
    layer
        Layer holding the raw counts, if not the default.

    Returns
    -------
    AnnData with CSR float32 counts in ``X``, ``obs[label_key]`` (categorical, same categories),
    ``obs["source_a"]`` / ``obs["source_b"]`` (names of the two summed cells), obs names
    ``up_<i>``, the source's ``var``, and parameters in ``uns["sccluster_upsample"]``.
    """
    import anndata as ad

    plan = _Plan(
        adata, n_cells, seed, label_key=label_key, thinning=thinning, chunk_size=chunk_size, layer=layer
    )
    builder = _CsrBuilder(plan.n_cells, plan.X.shape[1])
    for chunk in plan.chunks():
        builder.append(chunk)
    counts = builder.finish()
    del builder
    out = ad.AnnData(X=counts, obs=plan.obs(), var=adata.var.copy())
    out.uns["sccluster_upsample"] = plan.info()
    logger.info(
        "upsampled %d cells to %d (%.1f counts per cell)", adata.n_obs, n_cells, counts.sum() / n_cells
    )
    return out


def upsample_to_h5ad(
    adata,
    n_cells: int,
    path: str | os.PathLike,
    seed: int | None = 0,
    *,
    label_key: str = "cell_type",
    thinning: float = 0.5,
    chunk_size: int = DEFAULT_CHUNK,
    layer: str | None = None,
) -> Path:
    """:func:`upsample` straight to an ``.h5ad`` file, one chunk at a time: for datasets larger than memory.

    The file holds exactly what :func:`upsample` returns for the same arguments (same cells, same order).
    Only one chunk of new cells and the per-cell ``obs`` columns are in memory at once; the count matrix is
    appended to the file chunk by chunk (CSR, ``float32`` data, ``int32`` gene indices, ``int64`` row
    pointers). The file is written beside ``path`` and renamed into place when complete.

    Parameters
    ----------
    adata, n_cells, seed, label_key, thinning, chunk_size, layer
        As for :func:`upsample`.
    path
        Output ``.h5ad`` path (its folder must exist; an existing file is replaced).

    Returns
    -------
    The path written.
    """
    import anndata as ad
    import h5py

    from sccluster._utils import atomic_path
    from sccluster.io._csr_h5 import write_csr_blocks

    plan = _Plan(
        adata, n_cells, seed, label_key=label_key, thinning=thinning, chunk_size=chunk_size, layer=layer
    )
    totals: list[float] = []

    def blocks() -> Iterator[sp.csr_matrix]:
        for chunk in plan.chunks():
            totals.append(float(chunk.data.sum()))
            yield chunk

    with atomic_path(Path(path)) as tmp, h5py.File(tmp, "w") as f:
        write_csr_blocks(f, "X", blocks(), (plan.n_cells, plan.X.shape[1]))
        f.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        ad.io.write_elem(f, "obs", plan.obs())
        ad.io.write_elem(f, "var", adata.var.copy())
        ad.io.write_elem(f, "uns", {"sccluster_upsample": plan.info()})
        for name in ("layers", "obsm", "varm", "obsp", "varp"):
            ad.io.write_elem(f, name, {})
    logger.info(
        "upsampled %d cells to %d (%.1f counts per cell) in %s",
        adata.n_obs,
        n_cells,
        sum(totals) / n_cells,
        path,
    )
    return Path(path)


class _Plan:
    """The validated arguments and the sampling set-up of an upsampling, and its chunks of new cells."""

    def __init__(self, adata, n_cells, seed, *, label_key, thinning, chunk_size, layer) -> None:
        if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or n_cells < 1:
            msg = f"n_cells must be a positive integer, got {n_cells!r}"
            raise InputError(msg)
        if not 0 < thinning <= 1:
            msg = f"thinning must be in (0, 1], got {thinning!r}"
            raise InputError(msg)
        if int(chunk_size) < 1:
            msg = f"chunk_size must be a positive integer, got {chunk_size!r}"
            raise InputError(msg)
        if label_key not in adata.obs:
            msg = f"label column {label_key!r} not found in obs; available: {', '.join(adata.obs.columns) or 'none'}"
            raise InputError(msg)
        self.adata, self.n_cells, self.seed = adata, int(n_cells), resolve_seed(seed)
        self.label_key, self.thinning, self.chunk_size = label_key, float(thinning), int(chunk_size)
        self.X, self.where = _source_counts(adata, layer)
        self.labels = pd.Categorical(adata.obs[label_key])
        codes = np.asarray(self.labels.codes)
        self.sizes = np.bincount(codes[codes >= 0], minlength=len(self.labels.categories))
        eligible = self.sizes >= 2
        if not eligible.any():
            msg = f"no cell type in obs[{label_key!r}] has two or more cells; upsampling needs pairs of the same type"
            raise InputError(msg)
        if not eligible.all():
            dropped = [str(c) for c, ok in zip(self.labels.categories, eligible, strict=True) if not ok]
            logger.warning("cell types with fewer than 2 cells are not sampled: %s", ", ".join(dropped))
        self.prob = np.where(eligible, self.sizes, 0) / self.sizes[eligible].sum()
        self.order = np.argsort(np.where(codes >= 0, codes, len(self.sizes)), kind="stable")
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.types: list[np.ndarray] = []
        self.src_a: list[np.ndarray] = []
        self.src_b: list[np.ndarray] = []

    def chunks(self) -> Iterator[sp.csr_matrix]:
        """The new cells, ``chunk_size`` at a time (their types and sources are recorded for :meth:`obs`)."""
        rng = np.random.default_rng(self.seed)
        sizes, order, starts = self.sizes, self.order, self.starts
        with progress(total=self.n_cells, unit="cell", desc="upsample") as bar:
            done = 0
            while done < self.n_cells:
                m = int(min(self.chunk_size, self.n_cells - done))
                t = rng.choice(len(sizes), size=m, p=self.prob)
                n_t = sizes[t]
                ia = rng.integers(0, n_t)
                ib = (ia + rng.integers(1, n_t)) % n_t
                a, b = order[starts[t] + ia], order[starts[t] + ib]
                S = sp.csr_matrix(self.X[a] + self.X[b])
                _thin(S, self.thinning, rng)
                self.types.append(t.astype(np.int32))
                self.src_a.append(a.astype(np.int64))
                self.src_b.append(b.astype(np.int64))
                yield S
                done += m
                bar.update(m)

    def obs(self) -> pd.DataFrame:
        """``obs`` of the new cells: names ``up_<i>``, the label, and the two source cells."""
        a_all, b_all = np.concatenate(self.src_a), np.concatenate(self.src_b)
        obs = pd.DataFrame(
            index=pd.Index(np.char.add("up_", np.arange(self.n_cells).astype(str)), dtype=object)
        )
        obs[self.label_key] = pd.Categorical.from_codes(
            np.concatenate(self.types), categories=self.labels.categories
        )
        names = self.adata.obs_names
        if names.is_unique:
            obs["source_a"] = pd.Categorical.from_codes(a_all, categories=names)
            obs["source_b"] = pd.Categorical.from_codes(b_all, categories=names)
        else:
            obs["source_a"], obs["source_b"] = a_all, b_all
        return obs

    def info(self) -> dict:
        """The parameters recorded in ``uns["sccluster_upsample"]``."""
        info = {
            "n_cells": self.n_cells,
            "seed": int(self.seed),
            "thinning": self.thinning,
            "label_key": self.label_key,
            "chunk_size": self.chunk_size,
            "counts_from": self.where,
            "source_n_obs": int(self.adata.n_obs),
            "method": "sum of two distinct same-type cells, binomially thinned",
        }
        for key in ("source", "citation"):
            if isinstance(self.adata.uns.get(key), str):
                info[f"source_{key}" if key == "citation" else key] = self.adata.uns[key]
        return info
