"""Tests of sccluster.pp: prepare, select_genes, pca_embedding."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import sccluster as scc
from sccluster import InputError


@pytest.fixture
def small_adata():
    """300 cells x 400 genes (so HVG selection is not trivial)."""
    return scc.datasets.synthetic(n_cells=300, n_genes=400, n_clusters=3, random_state=1)


def test_prepare_writes_every_slot(small_adata):
    raw = small_adata.X.copy()
    scc.pp.prepare(small_adata, n_top_genes=100, n_comps=10, min_cells=0)
    a = small_adata
    assert sp.issparse(a.X) and a.X.format == "csr" and a.X.dtype == np.float32
    counts = a.layers["counts"]
    assert sp.issparse(counts) and counts.format == "csr" and counts.dtype == np.float32
    assert (counts != raw).nnz == 0  # raw counts preserved exactly
    assert np.median(a.obs["size_factors"]) == pytest.approx(1.0)
    lib = np.asarray(raw.sum(axis=1)).ravel()
    np.testing.assert_allclose(a.obs["size_factors"], lib / np.median(lib), rtol=1e-6)
    expected = np.log1p(raw.toarray() / a.obs["size_factors"].to_numpy()[:, None])
    np.testing.assert_allclose(a.X.toarray(), expected, rtol=1e-5, atol=1e-6)
    assert a.var["highly_variable"].dtype == bool and a.var["highly_variable"].sum() == 100
    ranks = a.var["highly_variable_rank"].to_numpy()
    assert sorted(ranks[a.var["highly_variable"]]) == list(range(100))
    np.testing.assert_allclose(a.var["mean"], expected.mean(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.var["std"], expected.std(axis=0, ddof=1), rtol=1e-4, atol=1e-6)
    assert a.obsm["X_pca"].shape == (300, 10)
    assert a.varm["PCs"].shape == (400, 10)
    assert np.all(a.varm["PCs"][~a.var["highly_variable"].to_numpy()] == 0)
    ratio = a.uns["pca"]["variance_ratio"]
    assert len(ratio) == 10 and np.all(np.diff(ratio) <= 1e-9) and ratio.sum() < 1
    params = a.uns["sccluster_prepare"]
    assert params["n_top_genes"] == 100 and params["n_comps"] == 10 and params["min_cells"] == 0


def test_prepare_copy_leaves_input_untouched(small_adata):
    before = small_adata.copy()
    out = scc.pp.prepare(small_adata, copy=True)
    assert out is not None and "counts" in out.layers
    assert list(small_adata.layers) == [] and (small_adata.X != before.X).nnz == 0
    assert scc.pp.prepare(small_adata) is None


def test_prepare_rerun_is_idempotent(small_adata):
    scc.pp.prepare(small_adata, n_top_genes=80, n_comps=5)
    first = small_adata.copy()
    scc.pp.prepare(small_adata, n_top_genes=80, n_comps=5)
    assert small_adata.shape == first.shape
    assert (small_adata.layers["counts"] != first.layers["counts"]).nnz == 0
    np.testing.assert_array_equal(small_adata.X.toarray(), first.X.toarray())
    np.testing.assert_array_equal(small_adata.var["highly_variable"], first.var["highly_variable"])
    np.testing.assert_allclose(small_adata.obsm["X_pca"], first.obsm["X_pca"], atol=1e-5)


def test_prepare_quality_control():
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, size=(50, 30)).astype(np.float32)
    counts[:, 0] = 0
    counts[:2, 0] = 5  # gene 0 in 2 cells only → removed with min_cells=3
    counts[10, :] = 0
    counts[10, 0] = 3  # cell 10 only has counts in gene 0 → empty after gene filtering
    counts[20, 5:] = 0  # cell 20 has at most 5 detected genes → removed with min_genes=6
    adata = ad.AnnData(sp.csr_matrix(counts), obs=pd.DataFrame(index=[f"c{i}" for i in range(50)]))
    adata.var_names = [f"g{j}" for j in range(30)]
    scc.pp.prepare(adata, min_genes=6, min_cells=3)
    assert "g0" not in adata.var_names and adata.n_vars == 29
    assert "c10" not in adata.obs_names and "c20" not in adata.obs_names and adata.n_obs == 48
    assert np.all(np.asarray(adata.layers["counts"].sum(axis=1)) > 0)


def test_prepare_nothing_left_raises(small_adata):
    before = small_adata.copy()
    with pytest.raises(InputError, match="min_genes"):
        scc.pp.prepare(small_adata, min_genes=10_000)
    # rejected before anything is written: the object is as it was
    assert small_adata.X is not None and (small_adata.X != before.X).nnz == 0
    assert list(small_adata.layers) == [] and small_adata.shape == before.shape


def test_repeated_gene_names_select_by_position(small_adata):
    # raw 10x gene symbols repeat; the baselines' PCA picks genes by position, models ask for unique names
    small_adata.var_names = [f"g{j % 390}" for j in range(small_adata.n_vars)]
    assert not small_adata.var_names.is_unique
    for n_top in (100, 1000):  # computed selection, and every gene
        emb = scc.pp.pca_embedding(small_adata, n_comps=5, n_top_genes=n_top)
        assert emb.shape == (300, 5) and np.all(np.isfinite(emb))
    scc.pp.prepare(small_adata, n_top_genes=100)
    assert scc.pp.gene_mask(small_adata).sum() == 100
    scc.tl.cluster(small_adata, method="kmeans", n_clusters=3)
    assert small_adata.obs["sccluster"].nunique() == 3
    with pytest.raises(InputError, match="var_names_make_unique"):
        scc.models.BGFormer(3, pretrain_steps=2, cluster_steps=2).fit(small_adata)


def test_gene_selection_without_any_variance_says_so():
    same = ad.AnnData(sp.csr_matrix(np.tile(np.arange(60, dtype=np.float32) % 5, (4, 1))))
    with pytest.raises(InputError, match="no gene varies across the 4 cells"):
        scc.pp.select_genes(same, 10)
    with pytest.raises(InputError, match="no gene varies"):
        scc.pp.pca_embedding(same, n_comps=2, n_top_genes=10)


@pytest.mark.parametrize(
    ("value", "word"), [(np.nan, "NaN"), (np.inf, "Inf"), (-1.0, "negative"), (0.5, "non-integer")]
)
@pytest.mark.parametrize("where", ["X", "layer"])
def test_prepare_rejects_bad_counts(small_adata, value, word, where):
    x = small_adata.X.toarray()
    x[3, 7] = value
    if where == "X":
        small_adata.X = sp.csr_matrix(x)
        kwargs, slot = {}, "X"
    else:
        small_adata.layers["raw"] = sp.csr_matrix(x)
        kwargs, slot = {"layer": "raw"}, "raw"
    with pytest.raises(InputError, match=word) as err:
        scc.pp.prepare(small_adata, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg and slot in msg


def test_prepare_accepts_dense_integer_counts(small_adata):
    dense = ad.AnnData(small_adata.X.toarray().astype(np.int64), var=small_adata.var.copy())
    scc.pp.prepare(dense)
    assert sp.issparse(dense.X) and dense.layers["counts"].dtype == np.float32


def test_streamed_pca_matches_dense_sklearn(small_adata):
    from sklearn.decomposition import PCA

    scc.pp.prepare(small_adata, n_top_genes=120, n_comps=8, min_cells=0)
    a = small_adata
    hvg = a.var["highly_variable"].to_numpy()
    x = a.X[:, hvg].toarray().astype(np.float64)
    z = np.clip((x - x.mean(0)) / x.std(0, ddof=1), -10, 10)
    ref = PCA(n_components=8, svd_solver="full").fit(z)
    emb = ref.transform(z)
    ours = a.obsm["X_pca"]
    for j in range(8):
        sign = np.sign(np.dot(ours[:, j], emb[:, j]))
        np.testing.assert_allclose(sign * ours[:, j], emb[:, j], atol=1e-3 * np.abs(emb[:, j]).max())
    np.testing.assert_allclose(a.uns["pca"]["variance_ratio"], ref.explained_variance_ratio_, rtol=1e-3)


def test_pca_embedding_matches_prepare_and_subsample_is_seeded(small_adata):
    emb = scc.pp.pca_embedding(small_adata, n_comps=6, n_top_genes=100)
    assert emb.shape == (300, 6) and list(small_adata.layers) == [] and small_adata.obsm.keys() == set()
    prepared = scc.pp.prepare(small_adata, n_top_genes=100, n_comps=6, min_cells=0, copy=True)
    np.testing.assert_allclose(np.abs(emb), np.abs(prepared.obsm["X_pca"]), atol=1e-3)
    sub1 = scc.pp.pca_embedding(small_adata, n_comps=4, max_cells=100, random_state=3)
    sub2 = scc.pp.pca_embedding(small_adata, n_comps=4, max_cells=100, random_state=3)
    np.testing.assert_array_equal(sub1, sub2)
    assert sub1.shape == (300, 4)


def test_select_genes_unprepared_is_deterministic_and_pure(small_adata):
    before = small_adata.copy()
    g1 = scc.pp.select_genes(small_adata, 50)
    g2 = scc.pp.select_genes(small_adata, 50)
    assert g1 == g2 and len(g1) == 50 and len(set(g1)) == 50
    assert g1 == [g for g in small_adata.var_names if g in set(g1)]  # var order
    assert (small_adata.X != before.X).nnz == 0
    assert list(small_adata.var.columns) == [] and list(small_adata.obs.columns) == list(before.obs.columns)
    # the planted marker genes (first 3 x 20 genes) are the most variable ones
    assert len(set(g1) & {f"gene_{j}" for j in range(60)}) >= 40


def test_select_genes_matches_scanpy_seurat(small_adata):
    import scanpy as sc

    ref = small_adata.copy()
    sc.pp.normalize_total(ref)
    sc.pp.log1p(ref)
    sc.pp.highly_variable_genes(ref, n_top_genes=60, flavor="seurat")
    expected = set(ref.var_names[ref.var["highly_variable"]])
    assert len(set(scc.pp.select_genes(small_adata, 60)) & expected) >= 58


def test_select_genes_uses_column_or_all_genes(small_adata):
    assert scc.pp.select_genes(small_adata, 1000) == list(small_adata.var_names)
    small_adata.var["highly_variable"] = np.arange(400) % 2 == 0
    assert scc.pp.select_genes(small_adata, 10) == list(small_adata.var_names[::2])
    with pytest.raises(InputError):
        scc.pp.select_genes(small_adata, 0)
