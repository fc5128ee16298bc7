"""Streamed PCA of z-scored, clipped, log-normalised highly variable genes.

The PCA is fitted on at most ``max_cells`` cells (a seeded subsample; every cell when there are
fewer) and then every cell is projected chunk by chunk, so only ``max_cells x n_genes`` values are
ever dense at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from sccluster._errors import InputError
from sccluster._utils import progress, resolve_seed

from ._genes import _check_n_top, check_some_gene_varies, gene_mask, normalized_dispersion, rank_genes
from ._stream import CHUNK, counts_matrix, gene_moments, resolve_size_factors, take_rows, to_csr

logger = logging.getLogger(__name__)

#: Largest fit matrix (cells x genes values) decomposed by an exact full SVD; larger ones use a
#: seeded randomized SVD.
FULL_SVD_MAX_VALUES = 10_000_000


@dataclass
class LogNormReader:
    """Log-normalised values of selected genes, read by row chunks.

    ``matrix`` holds either raw counts (``is_log=False``: divided by ``size_factors`` then
    ``log1p``) or values already log-normalised (``is_log=True``, e.g. a prepared ``X``).
    """

    matrix: Any
    n_obs: int
    gene_index: np.ndarray
    size_factors: np.ndarray | None = None
    is_log: bool = False

    def _lognorm(self, block: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
        block = block[:, self.gene_index].astype(np.float32)
        if not self.is_log:
            assert self.size_factors is not None  # raw counts are read with their size factors
            sf = self.size_factors[rows].astype(np.float32)
            block.data = np.log1p(block.data / np.repeat(sf, np.diff(block.indptr)))
        return block

    def rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """Sorted row positions → CSR block of log-normalised selected genes."""
        return self._lognorm(take_rows(self.matrix, rows), rows)

    def chunk(self, start: int, stop: int) -> sp.csr_matrix:
        return self._lognorm(to_csr(self.matrix[start:stop]), np.arange(start, stop))


def scale_block(
    block: sp.csr_matrix, mean: np.ndarray, std: np.ndarray, max_value: float | None
) -> np.ndarray:
    """Dense ``clip((block - mean) / std, ±max_value)`` as float32 (one chunk at a time)."""
    z = (block.toarray() - mean) / std
    if max_value is not None:
        np.clip(z, -max_value, max_value, out=z)
    return z.astype(np.float32, copy=False)


@dataclass
class PCAResult:
    """Output of :func:`streamed_pca`."""

    embedding: np.ndarray  # (n_obs, n_comps) float32
    components: np.ndarray  # (n_comps, n_genes)
    variance: np.ndarray
    variance_ratio: np.ndarray
    n_fit: int


def fit_subsample_pca(
    scaled_rows: Callable[[np.ndarray], np.ndarray],
    n_obs: int,
    *,
    n_comps: int,
    max_cells: int,
    seed: int,
    solver: Literal["auto", "randomized"] = "auto",
):
    """A PCA fitted on a seeded subsample of at most ``max_cells`` of ``n_obs`` cells; ``(pca, cells used)``.

    ``scaled_rows(rows)`` returns the dense scaled values (float32) of the cells at the sorted positions
    ``rows``, asked for by chunks of :data:`CHUNK`. ``n_comps`` is lowered to what the subsample allows.
    ``solver``: ``"auto"`` uses an exact SVD up to :data:`FULL_SVD_MAX_VALUES` values and a randomized one
    above; ``"randomized"`` always the randomized one (seeded).
    """
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    if n_obs > max_cells:
        fit_rows = np.sort(rng.choice(n_obs, size=max_cells, replace=False))
    else:
        fit_rows = np.arange(n_obs)
    fit = np.concatenate([scaled_rows(fit_rows[i : i + CHUNK]) for i in range(0, len(fit_rows), CHUNK)])
    max_comps = max(1, min(fit.shape[0] - 1, fit.shape[1]))
    if n_comps > max_comps:
        logger.info(
            "PCA: asked for %d components but the data allow %d; using %d", n_comps, max_comps, max_comps
        )
        n_comps = max_comps
    svd = "full" if solver == "auto" and fit.size <= FULL_SVD_MAX_VALUES else "randomized"
    pca = PCA(n_components=n_comps, svd_solver=svd, random_state=seed)
    pca.fit(fit)
    logger.info("PCA: %d components fitted on %d of %d cells (%s SVD)", n_comps, len(fit_rows), n_obs, svd)
    return pca, len(fit_rows)


def streamed_pca(
    reader: LogNormReader,
    mean: np.ndarray,
    std: np.ndarray,
    *,
    n_comps: int,
    max_value: float | None,
    max_cells: int,
    seed: int,
) -> PCAResult:
    """Fit a PCA on a seeded subsample of at most ``max_cells`` cells, then project all cells by chunks."""
    n_obs = reader.n_obs
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    pca, n_fit = fit_subsample_pca(
        lambda rows: scale_block(reader.rows(rows), mean, std, max_value), n_obs,
        n_comps=n_comps, max_cells=max_cells, seed=seed,
    )  # fmt: skip
    n_comps = pca.n_components_
    components = pca.components_.astype(np.float32)
    center = pca.mean_.astype(np.float32)
    out = np.empty((n_obs, n_comps), dtype=np.float32)
    starts = range(0, n_obs, CHUNK)
    for start in progress(starts, desc="PCA projection", disable=n_obs <= CHUNK, leave=False):
        stop = min(start + CHUNK, n_obs)
        z = scale_block(reader.chunk(start, stop), mean, std, max_value)
        out[start:stop] = (z - center) @ components.T
    return PCAResult(
        embedding=out,
        components=components,
        variance=pca.explained_variance_.astype(np.float64),
        variance_ratio=pca.explained_variance_ratio_.astype(np.float64),
        n_fit=n_fit,
    )


def check_pca_args(n_comps, max_value, max_cells) -> None:
    """Raise :class:`InputError` on invalid PCA parameters."""
    if isinstance(n_comps, bool) or not isinstance(n_comps, (int, np.integer)) or n_comps < 1:
        msg = f"n_comps must be a positive integer, got {n_comps!r}"
        raise InputError(msg)
    # numpy's isscalar is a TypeGuard to generic | complex | str | bytes | memoryview, not all of which
    # float()'s stubs take (numpy's generic has no __float__ in the stubs)
    if max_value is not None and not (np.isscalar(max_value) and float(max_value) > 0):  # type: ignore[arg-type]
        msg = f"max_value must be a positive number or None, got {max_value!r}"
        raise InputError(msg)
    if isinstance(max_cells, bool) or not isinstance(max_cells, (int, np.integer)) or max_cells < 2:
        msg = f"the PCA cell limit (max_cells / pca_max_cells) must be an integer >= 2, got {max_cells!r}"
        raise InputError(msg)


def pca_embedding(
    adata,
    *,
    n_comps: int = 50,
    n_top_genes: int = 2000,
    layer: str | None = None,
    max_value: float | None = 10.0,
    max_cells: int = 50_000,
    random_state: int | None = 0,
) -> np.ndarray:
    """PCA of the raw counts of an (unprepared) AnnData, without modifying it.

    Counts are divided by size factors (``obs["size_factors"]`` or library size / median),
    ``log1p``-transformed, restricted to :func:`select_genes` genes, z-scored per gene, clipped to
    ``±max_value`` and projected on the principal axes, which are fitted on at most ``max_cells``
    cells (a seeded subsample). The same code as :func:`sccluster.pp.prepare` with ``n_comps``.

    Parameters
    ----------
    adata
        AnnData with raw counts in ``layers["counts"]``, ``X`` or ``layer``.
    n_comps
        Number of components (reduced when the data have fewer genes or cells).
    n_top_genes
        Highly variable genes to use when ``var["highly_variable"]`` is absent.
    layer
        Layer holding the raw counts.
    max_value
        Clip bound after z-scoring (``None``: no clipping).
    max_cells
        Most cells the PCA is fitted on.
    random_state
        Seed of the subsample and of the randomized SVD.

    Returns
    -------
    ``(n_obs, n_comps)`` float32 array.
    """
    check_pca_args(n_comps, max_value, max_cells)
    n_top_genes = _check_n_top(n_top_genes)
    seed = resolve_seed(random_state)
    matrix, where = counts_matrix(adata, layer)
    mask = None
    if "highly_variable" in adata.var or adata.n_vars <= n_top_genes:
        mask = gene_mask(adata, n_top_genes, layer=layer)
    sf = resolve_size_factors(adata, matrix, where)
    mom = gene_moments(matrix, adata.n_obs, adata.n_vars, sf, where=where)
    if mask is None:  # select_genes' computation, from the moments already at hand
        mask, _ = rank_genes(normalized_dispersion(mom.mean_norm, mom.var_norm), n_top_genes)
        check_some_gene_varies(mask, adata.n_obs)
    gene_index = np.flatnonzero(mask)
    reader = LogNormReader(matrix, adata.n_obs, gene_index, size_factors=sf, is_log=False)
    res = streamed_pca(
        reader,
        mom.mean_log[gene_index],
        mom.std_log[gene_index],
        n_comps=int(n_comps),
        max_value=max_value,
        max_cells=int(max_cells),
        seed=seed,
    )
    return res.embedding
