"""Out of core: a backed ``.h5ad`` is prepared, fitted and written by streaming, with the in-memory results."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import sccluster as scc
from sccluster import InputError
from sccluster._validation import on_disk
from sccluster.datasets import synthetic
from sccluster.models import BGFormer, SiameseClu
from sccluster.tl._resources import data_shape as estimate_data_shape

N_CELLS = 4500  # more than one chunk of 4,096 rows, so every streamed pass crosses a chunk boundary
BGF = {
    "pretrain_steps": 60,
    "cluster_steps": 40,
    "batch_size": 64,
    "d_model": 16,
    "n_anchors": 8,
    "device": "cpu",
}
SIAMESE = {"pretrain_steps": 30, "cluster_steps": 20, "n_hidden": 32, "device": "cpu"}


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    adata = synthetic(n_cells=N_CELLS, n_genes=300, n_clusters=4, fold_change=6.0, random_state=0)
    counts = adata.X.tolil()
    counts[:, :5] = 0  # five genes in no cell: quality control drops them
    adata.X = counts.tocsr()
    out = tmp_path_factory.mktemp("backed") / "planted.h5ad"
    adata.write_h5ad(out)
    return out


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def prepared(path):
    memory = scc.read(path)
    scc.pp.prepare(memory, n_top_genes=100)
    backed = scc.read(path, backed="r")
    scc.pp.prepare(backed, n_top_genes=100)
    yield memory, backed
    backed.file.close()


def test_prepare_streams_the_file_and_matches_memory(path, prepared):
    memory, backed = prepared
    before = _md5(path)
    assert backed.isbacked and backed.shape == (N_CELLS, 300) and memory.shape == (N_CELLS, 295)
    np.testing.assert_array_equal(backed.obs["size_factors"], memory.obs["size_factors"])
    kept = backed.var.loc[memory.var_names]
    for column in ("highly_variable", "highly_variable_rank", "dispersions_norm", "mean", "std"):
        np.testing.assert_array_equal(kept[column], memory.var[column])
    dropped = backed.var.iloc[:5]
    assert not dropped["highly_variable"].any() and dropped["mean"].isna().all()
    assert backed.uns["sccluster_prepare"]["backed"] is True
    assert sp.issparse(backed.X[:3]) or hasattr(backed.X, "to_memory")  # X stays the counts on disk
    assert _md5(path) == before


@pytest.mark.parametrize(
    ("cls", "params"), [(BGFormer, BGF), (SiameseClu, SIAMESE)], ids=["bgformer", "siamese"]
)
def test_fit_and_predict_on_disk_give_the_in_memory_result(prepared, cls, params):
    memory, backed = prepared
    in_memory, on_disk = cls(4, **params).fit(memory), cls(4, **params).fit(backed)
    np.testing.assert_array_equal(on_disk.labels_, in_memory.labels_)
    np.testing.assert_array_equal(on_disk.embedding_, in_memory.embedding_)
    np.testing.assert_array_equal(on_disk.predict(backed), in_memory.predict(memory))  # predict streams too


def test_zarr_store_stays_on_disk_with_the_in_memory_result(path, prepared, tmp_path):
    memory, _ = prepared
    store = tmp_path / "planted.zarr"
    with warnings.catch_warnings():  # anndata announces its next default zarr format
        warnings.simplefilter("ignore", UserWarning)
        ad.read_h5ad(path).write_zarr(store)
    lazy = scc.read(store, backed="r")
    assert on_disk(lazy) and not lazy.isbacked
    scc.pp.prepare(lazy, n_top_genes=100)
    np.testing.assert_array_equal(lazy.obs["size_factors"], memory.obs["size_factors"])
    model = BGFormer(4, **BGF).fit(lazy)
    np.testing.assert_array_equal(model.labels_, BGFormer(4, **BGF).fit(memory).labels_)
    scc.io.write_h5ad(lazy, tmp_path / "out.h5ad")  # the counts, streamed from the store block by block
    assert (ad.read_h5ad(tmp_path / "out.h5ad").X != ad.read_h5ad(path).X).nnz == 0


def test_counts_in_a_layer_stay_on_disk_with_the_in_memory_result(path, tmp_path):
    """The usual file: X log-normalised, the counts in layers["counts"]; backed, neither is loaded."""
    adata = ad.read_h5ad(path)
    adata.layers["counts"] = adata.X.copy()
    adata.X = adata.X.multiply(1e4 / adata.X.sum(axis=1)).tocsr().log1p().astype(np.float32)
    adata.raw = adata  # kept by the output, from the file
    layered = tmp_path / "layered.h5ad"
    adata.write_h5ad(layered)
    before = _md5(layered)
    memory = scc.read(layered, layer="counts")
    scc.pp.prepare(memory, n_top_genes=100, layer="counts")
    backed = scc.read(layered, backed="r", layer="counts")
    try:
        assert backed.isbacked and not sp.issparse(backed.layers["counts"])  # anndata's on-disk dataset
        scc.pp.prepare(backed, n_top_genes=100, layer="counts")
        np.testing.assert_array_equal(backed.obs["size_factors"], memory.obs["size_factors"])
        model = BGFormer(4, **BGF).fit(backed, layer="counts")
        np.testing.assert_array_equal(model.labels_, BGFormer(4, **BGF).fit(memory).labels_)
        backed.obs["sccluster"] = model.labels_.astype(str)
        assert estimate_data_shape(backed) == (N_CELLS, 300, source_nnz(layered))
        backed.to_memory()  # anndata closes the AnnData's file here (tl.cluster(copy=True) does this)
        scc.io.write_h5ad(backed, tmp_path / "out.h5ad")  # X, the layer and raw copied from the file by HDF5
    finally:
        backed.file.close()
    out, source = ad.read_h5ad(tmp_path / "out.h5ad"), ad.read_h5ad(layered)
    assert (out.X != source.X).nnz == 0 and (out.layers["counts"] != source.layers["counts"]).nnz == 0
    assert out.raw is not None and (out.raw.X != source.raw.X).nnz == 0
    assert out.obs["sccluster"].notna().all() and _md5(layered) == before


def source_nnz(path) -> int:
    return int(ad.read_h5ad(path).layers["counts"].nnz)


def test_pca_of_backed_data_matches_memory(path):
    memory = scc.read(path)
    scc.pp.prepare(memory, n_top_genes=100, n_comps=10)  # counts / size factor: the same to float rounding
    backed = scc.read(path, backed="r")
    try:
        scc.pp.prepare(backed, n_top_genes=100, n_comps=10)
        np.testing.assert_allclose(np.abs(backed.obsm["X_pca"]), np.abs(memory.obsm["X_pca"]), atol=5e-3)
    finally:
        backed.file.close()


def test_backed_cells_failing_qc_and_copy_are_clear_errors(tmp_path):
    adata = synthetic(n_cells=200, n_genes=50, n_clusters=2, random_state=0)
    counts = adata.X.tolil()
    counts[7, :] = 0
    adata.X = counts.tocsr()
    adata.write_h5ad(tmp_path / "empty_cell.h5ad")
    backed = scc.read(tmp_path / "empty_cell.h5ad", backed="r")
    try:
        with pytest.raises(
            InputError, match=r"1 of 200 cells fail quality control .*remove them from the file"
        ):
            scc.pp.prepare(backed)
        with pytest.raises(InputError, match="cannot copy a backed AnnData"):
            scc.pp.prepare(backed, copy=True)
        with pytest.raises(InputError, match="view of a backed AnnData"):
            scc.io.write_h5ad(backed[:10], tmp_path / "view.h5ad")
    finally:
        backed.file.close()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sccluster", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_backed_run_writes_the_in_memory_labels_and_copies_the_counts(path, tmp_path):
    params = [a for k, v in BGF.items() for a in ("--param", f"{k}={v}")]
    common = ["--method", "bgformer", "--n-clusters", "4", *params]
    before = _md5(path)
    memory = _cli("cluster", str(path), "-o", str(tmp_path / "memory.h5ad"), *common)
    assert memory.returncode == 0, memory.stderr
    backed = _cli("cluster", str(path), "-o", str(tmp_path / "backed.h5ad"), "--backed", *common)
    assert backed.returncode == 0, backed.stderr
    results = _cli(
        "cluster", str(path), "-o", str(tmp_path / "results.h5ad"), "--backed", "--results-only", *common
    )
    assert results.returncode == 0, results.stderr
    assert _md5(path) == before
    want = ad.read_h5ad(tmp_path / "memory.h5ad").obs["sccluster"]
    out = ad.read_h5ad(tmp_path / "backed.h5ad")
    np.testing.assert_array_equal(out.obs.loc[want.index, "sccluster"].astype(str), want.astype(str))
    assert (out.X != ad.read_h5ad(path).X).nnz == 0  # the raw counts, copied from disk
    slim = ad.read_h5ad(tmp_path / "results.h5ad")
    assert slim.X is None and not slim.layers and slim.shape == out.shape
    np.testing.assert_array_equal(slim.obs["sccluster"], out.obs["sccluster"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backed.h5ad", "memory.h5ad", "results.h5ad"]


def test_cli_backed_needs_an_h5ad(tmp_path):
    (tmp_path / "x.csv").write_text("cell,g1\nc1,1\n")
    proc = _cli("cluster", str(tmp_path / "x.csv"), "-o", str(tmp_path / "o.h5ad"), "--backed")
    assert proc.returncode == 2
    assert (
        proc.stderr.startswith("error: --backed reads .h5ad files and .zarr stores only")
        and "Traceback" not in proc.stderr
    )
