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
    n_batches: int = 1,
    batch_shift: float = 0.0,
    random_state: int = 0,
):
    """Make an AnnData of negative-binomial counts with planted clusters.

    Each cluster over-expresses its own ``n_markers`` genes by ``fold_change``; library sizes vary
    log-normally across cells. ``obs["cell_type"]`` holds the planted label. With ``n_batches > 1``
    the cells are also split into batches (``obs["batch"]``: ``"batch_0"``, ``"batch_1"``, ...), each
    with a gene-wise multiplicative effect on the means, as donors or sequencing runs have.

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
    n_batches
        Number of batches (default 1: no batches, no ``obs["batch"]``, and data identical to those of
        earlier versions). Cells are assigned to batches at random in equal numbers (up to one cell),
        independently of their cluster, so every cluster is present in every batch.
    batch_shift
        Strength of the batch effect (``>= 0``, default 0): every batch multiplies the mean of every gene
        by its own factor ``exp(N(0, batch_shift²))``. At 1.0 two batches differ by a factor of about 2
        or more on half the genes, far more than the clusters' markers, so a method that ignores the
        batches finds them rather than the clusters. The batches and their effects come from a stream of
        their own, so the clusters, library sizes and counts' other draws do not depend on them.
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
    if (
        isinstance(n_batches, bool)
        or not isinstance(n_batches, (int, np.integer))
        or not 1 <= n_batches <= n_cells
    ):
        msg = f"n_batches must be an integer from 1 to n_cells, got {n_batches!r}"
        raise ValueError(msg)
    if not np.isfinite(batch_shift) or batch_shift < 0:
        msg = f"batch_shift must be a non-negative number, got {batch_shift!r}"
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
    batch = None
    if n_batches > 1:  # a stream of its own: the draws below (and above) are those of unbatched data
        batch_rng = np.random.default_rng(np.random.SeedSequence(random_state).spawn(1)[0])
        batch = batch_rng.permutation(np.arange(n_cells) % n_batches)
        effect = np.exp(batch_rng.normal(0.0, batch_shift, size=(n_batches, n_genes)))
        mu = mu * effect[batch]
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
    if batch is not None:
        names = [f"batch_{b}" for b in range(n_batches)]
        obs["batch"] = pd.Categorical([names[b] for b in batch], categories=names)
    var = pd.DataFrame(index=[f"gene_{j}" for j in range(n_genes)])
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)
