"""Streamed count source and per-batch scaling."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sccluster import InputError
from sccluster.data import CountSource, Scaler


def _dense_scaled(adata, max_value=10.0):
    x = adata.X.toarray().astype(np.float64)
    totals = x.sum(1)
    sf = totals / np.median(totals)
    logn = np.log1p(x / sf[:, None])
    mean, std = logn.mean(0), logn.std(0, ddof=1)
    std[std == 0] = 1
    return np.clip((logn - mean) / std, -max_value, max_value), sf


def test_scaler_matches_dense_reference(synthetic_adata):
    src = CountSource(synthetic_adata)
    scaler = Scaler.fit(src)
    ref, sf = _dense_scaled(synthetic_adata)
    np.testing.assert_allclose(src.size_factors, sf, rtol=1e-5)
    got = np.concatenate([scaler.transform(b.counts, b.size_factors) for b in src.iter_batches(128)])
    np.testing.assert_allclose(got, ref, atol=2e-4)
    import torch

    b = src.batch(np.arange(10))
    t = scaler.transform_torch(torch.from_numpy(b.counts), torch.from_numpy(b.size_factors))
    np.testing.assert_allclose(t.numpy(), ref[:10], atol=2e-4)


def test_batches_cover_every_cell_once_and_shuffle_is_seeded(synthetic_adata):
    src = CountSource(synthetic_adata)
    seen = np.concatenate(
        [b.index for b in src.iter_batches(100, shuffle=True, rng=np.random.default_rng(0))]
    )
    assert sorted(seen.tolist()) == list(range(synthetic_adata.n_obs))
    again = np.concatenate(
        [b.index for b in src.iter_batches(100, shuffle=True, rng=np.random.default_rng(0))]
    )
    np.testing.assert_array_equal(seen, again)
    b = src.batch(np.array([5, 1, 3]))
    np.testing.assert_array_equal(b.counts, synthetic_adata.X[[5, 1, 3]].toarray())


def test_gene_alignment_and_missing_genes(synthetic_adata):
    genes = list(synthetic_adata.var_names[[7, 2, 9]])
    src = CountSource(synthetic_adata, genes=genes)
    np.testing.assert_array_equal(src.batch(np.arange(4)).counts, synthetic_adata[:4, genes].X.toarray())
    with pytest.raises(InputError, match="missing"):
        CountSource(synthetic_adata, genes=[*genes, "not_a_gene"])


@pytest.fixture
def backed(synthetic_adata, tmp_path):
    """``synthetic_adata`` written to an ``.h5ad`` and opened backed."""
    import anndata as ad

    path = tmp_path / "s.h5ad"
    synthetic_adata.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    yield backed
    backed.file.close()


def test_backed_source_streams_same_values(synthetic_adata, backed):
    src_b, src_m = CountSource(backed), CountSource(synthetic_adata)
    np.testing.assert_allclose(src_b.size_factors, src_m.size_factors)
    idx = np.array([599, 3, 250, 4])
    np.testing.assert_array_equal(src_b.batch(idx).counts, src_m.batch(idx).counts)
    order = np.concatenate(
        [b.index for b in src_b.iter_batches(64, shuffle=True, rng=np.random.default_rng(1))]
    )
    assert sorted(order.tolist()) == list(range(synthetic_adata.n_obs))
    subset = np.arange(0, synthetic_adata.n_obs, 3)
    rng = np.random.default_rng(2)
    got = np.concatenate([b.index for b in src_b.iter_batches(64, shuffle=True, rng=rng, indices=subset)])
    assert sorted(got.tolist()) == subset.tolist() and not np.array_equal(got, subset)


def test_backed_batches_are_read_ahead_and_equal_the_in_memory_ones(synthetic_adata, backed):
    """On disk the next batch is read in a background thread: the same batches, in order; closing stops it."""
    import threading

    src_b, src_m = CountSource(backed), CountSource(synthetic_adata)
    for kwargs in ({}, {"shuffle": True, "drop_last": True}):
        on_disk = list(src_b.iter_batches(64, rng=np.random.default_rng(3), **kwargs))
        in_memory = list(src_m.iter_batches(64, rng=np.random.default_rng(3), **kwargs))
        assert len(on_disk) == len(in_memory) == synthetic_adata.n_obs // 64 + (not kwargs)
        for b, m in zip(on_disk, in_memory, strict=True):
            np.testing.assert_array_equal(b.index, m.index)
            np.testing.assert_array_equal(b.counts, m.counts)
    stream = src_b.iter_batches(64)
    next(stream)
    assert any(t.name.startswith("sccluster-prefetch") for t in threading.enumerate())
    stream.close()  # a caller that stops early (the training loop's step budget)
    assert not any(t.name.startswith("sccluster-prefetch") for t in threading.enumerate())


def test_counts_layer_preferred_and_bad_values(synthetic_adata):
    a = synthetic_adata
    a.layers["counts"] = a.X.copy()
    a.X = a.X.multiply(0.5).tocsr()  # not counts any more
    assert CountSource(a).where == "layers['counts']"
    with pytest.raises(InputError, match="non-integer"):
        CountSource(a, layer="X")
    bad = a.copy()
    bad.X = sp.csr_matrix(-a.layers["counts"].toarray())
    with pytest.raises(InputError, match="negative"):
        CountSource(bad, layer="X")


def test_reference_total_normalises_new_cells_like_training(synthetic_adata):
    train = CountSource(synthetic_adata)
    new = CountSource(synthetic_adata[:50].copy(), reference_total=train.reference_total)
    np.testing.assert_allclose(new.size_factors, train.size_factors[:50], rtol=1e-6)


def test_reference_total_from_given_size_factors(synthetic_adata):
    # Training data prepared by scc.pp.prepare carry obs["size_factors"]; the reference library size is
    # still recorded, so a single new cell without factors is scaled as it was in training, not by itself.
    import sccluster as scc

    prepared = scc.pp.prepare(synthetic_adata, copy=True)
    train = CountSource(prepared)
    np.testing.assert_allclose(train.size_factors, prepared.obs["size_factors"], rtol=1e-6)
    totals = np.asarray(prepared.layers["counts"].sum(axis=1)).ravel()
    assert train.reference_total == pytest.approx(np.median(totals))
    raw = prepared[[7]].copy()
    del raw.obs["size_factors"]
    single = CountSource(raw, reference_total=train.reference_total)
    np.testing.assert_allclose(single.size_factors, train.size_factors[[7]], rtol=1e-6)
    assert abs(float(train.size_factors[7]) - 1.0) > 0.05  # the old fallback (its own median) gave 1
