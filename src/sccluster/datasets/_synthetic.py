"""Synthetic negative-binomial counts with planted clusters (for tests and examples)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def synthetic(
    n_cells: int = 600,
    n_genes: int = 200,
    n_clusters: int = 4,
    *,
    n_markers: int = 20,
    fold_change: float = 4.0,
    dispersion: float = 2.0,
    mean_library: float = 2000.0,
    dropout: float = 0.0,
    proportions=None,
    random_state: int = 0,
):
    """Make an AnnData of negative-binomial counts with planted clusters.

    Each cluster over-expresses its own ``n_markers`` genes by ``fold_change``; library sizes vary
    log-normally across cells. ``obs["cell_type"]`` holds the planted label.

    Parameters
    ----------
    n_cells, n_genes, n_clusters
        Shape and number of planted clusters (cells are split as evenly as possible unless
        ``proportions`` is given).
    n_markers
        Marker genes per cluster (``n_clusters * n_markers`` must not exceed ``n_genes``).
    fold_change
        Mean multiplier of a cluster's marker genes.
    dispersion
        Negative-binomial dispersion θ (variance = μ + μ²/θ).
    mean_library
        Expected total counts per cell.
    dropout
        Extra probability of zeroing each count (zero inflation).
    proportions
        Share of the cells in each cluster (``n_clusters`` non-negative numbers, normalised to sum to
        1); cluster ``k`` gets ``round(proportions[k] * n_cells)`` cells, the largest cluster absorbing
        the rounding. ``None``: equal shares.
    random_state
        Seed of the generator.

    Returns
    -------
    AnnData with CSR float32 counts in ``X``.
    """
    import anndata as ad

    if n_clusters * n_markers > n_genes:
        msg = f"n_clusters * n_markers = {n_clusters * n_markers} exceeds n_genes = {n_genes}"
        raise ValueError(msg)
    rng = np.random.default_rng(random_state)
    if proportions is None:
        labels = np.sort(np.arange(n_cells) % n_clusters)
    else:
        share = np.asarray(proportions, dtype=float)
        if share.shape != (n_clusters,) or (share < 0).any() or share.sum() <= 0:
            msg = f"proportions must be {n_clusters} non-negative numbers with a positive sum, got {proportions!r}"
            raise ValueError(msg)
        sizes = np.round(share / share.sum() * n_cells).astype(int)
        sizes[np.argmax(sizes)] += n_cells - sizes.sum()
        labels = np.repeat(np.arange(n_clusters), sizes)
    rng.shuffle(labels)
    base = rng.gamma(shape=0.6, scale=1.0, size=n_genes) + 0.05
    profiles = np.tile(base, (n_clusters, 1))
    for k in range(n_clusters):
        profiles[k, k * n_markers : (k + 1) * n_markers] *= fold_change
    profiles /= profiles.sum(axis=1, keepdims=True)
    library = mean_library * rng.lognormal(mean=0.0, sigma=0.3, size=n_cells)
    mu = profiles[labels] * library[:, None]
    # NB as a gamma-Poisson mixture
    lam = rng.gamma(shape=dispersion, scale=mu / dispersion)
    counts = rng.poisson(lam).astype(np.float32)
    if dropout > 0:
        counts[rng.random(counts.shape) < dropout] = 0
    empty = counts.sum(axis=1) == 0
    counts[empty, 0] = 1  # every cell keeps at least one count
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([f"type_{k}" for k in labels])},
        index=[f"cell_{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"gene_{j}" for j in range(n_genes)])
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)
