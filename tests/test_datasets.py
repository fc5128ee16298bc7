"""sccluster.datasets: the bundled demo, loading by name or path, and upsampling."""

from __future__ import annotations

import hashlib
from importlib import resources

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sccluster import InputError, settings
from sccluster.datasets import demo_path, list_datasets, load, synthetic, upsample, upsample_to_h5ad


@pytest.fixture
def source():
    """120 labelled cells x 50 genes; one type has a single cell (it cannot form a pair)."""
    adata = synthetic(n_cells=120, n_genes=50, n_clusters=3, n_markers=10, random_state=3)
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    labels[0] = "singleton"
    adata.obs["cell_type"] = pd.Categorical(labels)
    return adata


@pytest.fixture
def datasetdir(tmp_path, monkeypatch):
    small = synthetic(n_cells=30, n_genes=40, n_clusters=2, n_markers=5)
    small.write_h5ad(tmp_path / "tiny_set.h5ad")
    small[:10].copy().write_h5ad(tmp_path / "other.h5ad")
    (tmp_path / "notes.txt").write_text("not a dataset")
    monkeypatch.setattr(settings, "datasetdir", tmp_path)
    return tmp_path


def row_hashes(X: sp.csr_matrix) -> list[str]:
    X = sp.csr_matrix(X)
    X.sort_indices()
    return [
        hashlib.md5(X.indices[s:e].tobytes() + X.data[s:e].tobytes()).hexdigest()
        for s, e in zip(X.indptr[:-1], X.indptr[1:], strict=True)
    ]


# --- demo -----------------------------------------------------------------------------------------


def test_demo_file_is_shipped_and_small():
    resource = resources.files("sccluster.datasets").joinpath("_data", "pbmc4k_demo.h5ad")
    assert resource.is_file()
    assert demo_path().stat().st_size < 2_000_000
    assert resources.files("sccluster.datasets").joinpath("_data", "README.md").is_file()


def test_demo_content(demo_adata):
    assert demo_adata.shape == (3000, 2000)
    assert demo_adata.obs["cell_type"].dtype == "category"
    assert len(demo_adata.obs["cell_type"].cat.categories) == 8
    assert demo_adata.obs["cell_type"].value_counts().min() > 50
    X = demo_adata.X
    assert sp.issparse(X) and X.format == "csr" and X.dtype == np.float32
    assert np.array_equal(X.data, np.round(X.data)) and X.data.min() >= 0
    assert (np.asarray(X.sum(axis=1)).ravel() > 0).all()
    for key in ("source", "citation", "demo_notes"):
        assert isinstance(demo_adata.uns[key], str) and demo_adata.uns[key]
    assert "scDCC" in demo_adata.uns["source"]
    assert demo_adata.uns["sccluster_io"]["X_is_raw_counts"] is True
    assert demo_adata.obs_names.is_unique and demo_adata.var_names.is_unique


# --- load / list_datasets -------------------------------------------------------------------------


def test_list_datasets(datasetdir):
    assert list_datasets() == ["other", "tiny_set"]


@pytest.mark.parametrize("name", ["tiny_set", "tiny_set.h5ad"])
def test_load_by_name(datasetdir, name):
    adata = load(name)
    assert adata.shape == (30, 40)
    assert adata.uns["sccluster_io"]["source"] == str(datasetdir / "tiny_set.h5ad")


def test_load_by_name_backed(datasetdir):
    adata = load("other", backed="r")
    assert adata.isbacked and adata.n_obs == 10
    adata.file.close()


def test_load_by_path(datasetdir, tmp_path):
    adata = load(datasetdir / "other.h5ad")
    assert adata.n_obs == 10
    assert load(str(datasetdir / "other.h5ad")).n_obs == 10


def test_load_demo_by_name():
    assert load("demo").shape == (3000, 2000)


def test_load_unknown_name_lists_available(datasetdir):
    with pytest.raises(InputError) as err:
        load("pbmc_nope")
    text = str(err.value)
    assert "\n" not in text
    assert "other, tiny_set" in text
    assert "SCCLUSTER_DATASETDIR" in text and "datasetdir" in text


def test_load_missing_path_says_file_not_found(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load(tmp_path / "missing.h5ad")


def test_load_real_benchmark_file_when_present():
    if "pbmc68k_reduced" not in list_datasets():
        pytest.skip("benchmark data folder not available")
    adata = load("pbmc68k_reduced", backed="r")
    assert adata.n_obs == 700
    adata.file.close()


# --- upsample -------------------------------------------------------------------------------------


def test_upsample_shape_labels_and_counts(source):
    up = upsample(source, 700, seed=0, chunk_size=128)
    assert up.shape == (700, source.n_vars)
    assert list(up.var_names) == list(source.var_names)
    assert list(up.obs_names[:3]) == ["up_0", "up_1", "up_2"]
    X = up.X
    assert X.format == "csr" and X.dtype == np.float32
    assert np.array_equal(X.data, np.round(X.data)) and X.data.min() > 0
    assert (np.asarray(X.sum(axis=1)).ravel() > 0).all()
    # labels: the common type of the two source cells, which are distinct cells
    src_labels = source.obs["cell_type"]
    a, b = up.obs["source_a"].astype(str), up.obs["source_b"].astype(str)
    assert (a.to_numpy() != b.to_numpy()).all()
    np.testing.assert_array_equal(src_labels.loc[a].to_numpy(), up.obs["cell_type"].to_numpy())
    np.testing.assert_array_equal(src_labels.loc[b].to_numpy(), up.obs["cell_type"].to_numpy())
    assert list(up.obs["cell_type"].cat.categories) == list(src_labels.cat.categories)
    assert "singleton" not in set(up.obs["cell_type"])  # one cell cannot make a pair


def test_upsample_to_h5ad_writes_the_in_memory_result_chunk_by_chunk(source, tmp_path):
    import anndata as ad

    want = upsample(source, 700, seed=3, chunk_size=128)
    path = upsample_to_h5ad(source, 700, tmp_path / "up.h5ad", seed=3, chunk_size=128)
    got = ad.read_h5ad(path)
    assert (got.X != want.X).nnz == 0 and got.X.dtype == np.float32
    pd.testing.assert_frame_equal(got.obs, want.obs)
    assert got.uns["sccluster_upsample"] == want.uns["sccluster_upsample"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["up.h5ad"]  # no temporary file left


def test_upsample_rows_are_thinned_sums(source):
    up = upsample(source, 300, seed=5)
    X = source.X.toarray()
    idx = {name: i for i, name in enumerate(source.obs_names)}
    ia = up.obs["source_a"].astype(str).map(idx).to_numpy()
    ib = up.obs["source_b"].astype(str).map(idx).to_numpy()
    assert (up.X.toarray() <= X[ia] + X[ib]).all()


def test_upsample_no_duplicates(source):
    up = upsample(source, 2000, seed=1, chunk_size=300)
    hashes = row_hashes(up.X)
    assert len(set(hashes)) == len(hashes)
    assert not set(hashes) & set(row_hashes(source.X))


def test_upsample_deterministic(source):
    first = upsample(source, 400, seed=7, chunk_size=150)
    again = upsample(source, 400, seed=7, chunk_size=150)
    other = upsample(source, 400, seed=8, chunk_size=150)
    assert (first.X != again.X).nnz == 0
    assert (first.obs["source_a"] == again.obs["source_a"]).all()
    assert (first.X != other.X).nnz > 0


def test_upsample_library_sizes_and_type_frequencies(source):
    up = upsample(source, 3000, seed=2)
    src_lib = np.asarray(source.X.sum(axis=1)).ravel()
    up_lib = np.asarray(up.X.sum(axis=1)).ravel()
    assert abs(up_lib.mean() / src_lib.mean() - 1) < 0.1
    freq = up.obs["cell_type"].value_counts(normalize=True)
    src_freq = source.obs["cell_type"].value_counts(normalize=True)
    for t in ("type_0", "type_1", "type_2"):
        assert abs(freq[t] - src_freq[t]) < 0.03


def test_upsample_uses_counts_layer_and_backed_input(source, tmp_path):
    normalised = source.copy()
    normalised.layers["counts"] = source.X.copy()
    normalised.X = sp.csr_matrix(np.log1p(source.X.toarray()))
    from_layer = upsample(normalised, 200, seed=4)
    assert (from_layer.X != upsample(source, 200, seed=4).X).nnz == 0
    source.write_h5ad(tmp_path / "s.h5ad")
    backed = ad.read_h5ad(tmp_path / "s.h5ad", backed="r")
    assert (upsample(backed, 200, seed=4).X != from_layer.X).nnz == 0
    backed.file.close()


def test_upsample_leaves_the_source_untouched():
    # integer counts with unsorted column indices (as adata[:, genes].copy() leaves them), and duplicates
    X = sp.csr_matrix(
        (
            np.array([1, 2, 3, 4, 5], dtype=np.int64),
            np.array([2, 0, 1, 0, 0], dtype=np.int32),
            np.array([0, 2, 3, 5], dtype=np.int32),
        ),
        shape=(3, 3),
    )
    src = ad.AnnData(X, obs=pd.DataFrame({"cell_type": ["a"] * 3}, index=["c0", "c1", "c2"]))
    arrays = [X.data.copy(), X.indices.copy(), X.indptr.copy()]
    up = upsample(src, 4, seed=0)
    assert up.n_obs == 4
    for before, after in zip(arrays, [src.X.data, src.X.indices, src.X.indptr], strict=True):
        np.testing.assert_array_equal(before, after)


def test_upsample_bad_input(source):
    with pytest.raises(InputError, match="label column 'nope'"):
        upsample(source, 10, label_key="nope")
    with pytest.raises(InputError, match="thinning"):
        upsample(source, 10, thinning=0)
    with pytest.raises(InputError, match="n_cells"):
        upsample(source, 0)
    with pytest.raises(InputError, match="random_state must be between 0 and"):
        upsample(source, 10, seed=-1)
    lognorm = source.copy()
    lognorm.X = sp.csr_matrix(np.log1p(source.X.toarray()))
    with pytest.raises(InputError, match="non-integer"):
        upsample(lognorm, 10)
