"""Tests of sccluster.tl.cluster."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import sccluster as scc
from sccluster import InputError


def test_cluster_writes_every_slot(synthetic_adata):
    out = scc.tl.cluster(synthetic_adata, method="kmeans", n_clusters=4, n_pcs=20, random_state=3)
    assert out is None
    a = synthetic_adata
    labels = a.obs["sccluster"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    assert list(labels.cat.categories) == ["0", "1", "2", "3"]
    assert scc.metrics.ari(a.obs["cell_type"], labels) >= 0.9
    emb = a.obsm["X_sccluster"]
    assert emb.shape == (600, 20) and emb.dtype == np.float32
    info = a.uns["sccluster"]
    assert info["method"] == "kmeans" and info["n_clusters"] == 4 and info["n_clusters_requested"] == 4
    assert info["seed"] == 3 and info["time_s"] > 0 and isinstance(info["sccluster_version"], str)
    assert info["params"]["n_pcs"] == 20 and isinstance(info["params"]["n_pcs"], int)
    assert "sccluster_confidence" not in a.obs and "sccluster_proba" not in a.obsm  # k-means has none
    assert "resolution" not in info  # no Leiden run


def test_cluster_records_the_resolution_chosen(synthetic_adata):
    scc.tl.cluster(synthetic_adata, method="leiden", n_pcs=20)  # resolution chosen by stability
    info = synthetic_adata.uns["sccluster"]
    assert info["params"]["resolution"] == "auto" and 0 < info["resolution"] <= 2.0


def test_cluster_leiden_custom_key_and_categories_sorted(synthetic_adata):
    scc.tl.cluster(synthetic_adata, method="leiden", n_clusters=12, key_added="lei", n_pcs=20)
    cats = list(synthetic_adata.obs["lei"].cat.categories)
    assert cats == [str(i) for i in range(12)]  # numeric order, not "0", "1", "10", ...
    assert synthetic_adata.uns["lei"]["method"] == "leiden"
    assert synthetic_adata.uns["lei"]["n_clusters"] == 12
    assert "X_lei" in synthetic_adata.obsm


def test_cluster_copy_leaves_input_untouched(synthetic_adata):
    before = synthetic_adata.copy()
    out = scc.tl.cluster(synthetic_adata, method="kmeans", n_clusters=4, n_pcs=10, copy=True)
    assert out is not synthetic_adata and "sccluster" in out.obs
    assert list(synthetic_adata.obs.columns) == list(before.obs.columns)
    assert len(synthetic_adata.obsm) == 0 and len(synthetic_adata.uns) == 0


def test_cluster_result_is_writable(synthetic_adata, tmp_path):
    import anndata as ad

    scc.tl.cluster(synthetic_adata, method="kmeans", n_clusters=3, n_pcs=10)
    path = tmp_path / "out.h5ad"
    synthetic_adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert back.uns["sccluster"]["n_clusters"] == 3
    assert back.obs["sccluster"].equals(synthetic_adata.obs["sccluster"])


def test_cluster_again_under_the_same_key_leaves_nothing_stale(synthetic_adata):
    scc.tl.cluster(synthetic_adata, method="kmeans", n_clusters=3)
    synthetic_adata.obs["sccluster_confidence"] = 0.5  # as a method with soft assignments writes
    synthetic_adata.obsm["sccluster_proba"] = np.full((synthetic_adata.n_obs, 3), 1 / 3)
    scc.tl.cluster(synthetic_adata, method="kmeans", n_clusters=4)
    assert "sccluster_confidence" not in synthetic_adata.obs
    assert "sccluster_proba" not in synthetic_adata.obsm
    assert synthetic_adata.obs["sccluster"].nunique() == 4


def test_cluster_copy_of_backed_data(synthetic_adata, tmp_path):
    path = tmp_path / "syn.h5ad"
    synthetic_adata.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    out = scc.tl.cluster(backed, method="kmeans", n_clusters=4, copy=True)
    assert not out.isbacked and out.obs["sccluster"].nunique() == 4
    assert "sccluster" not in backed.obs
    backed.file.close()


def test_cluster_bad_input(synthetic_adata):
    with pytest.raises(InputError, match="unknown method"):
        scc.tl.cluster(synthetic_adata, method="nope")
    with pytest.raises(InputError, match="unknown parameter"):
        scc.tl.cluster(synthetic_adata, method="kmeans", n_clusters=3, bogus=1)
    with pytest.raises(InputError, match="fewer cells than clusters"):
        scc.tl.cluster(synthetic_adata, method="kmeans", n_clusters=10_000)
    with pytest.raises(InputError, match="n_clusters"):
        scc.tl.cluster(synthetic_adata, n_clusters=0)
    with pytest.raises(InputError, match="must be an AnnData, got ndarray"):
        scc.tl.cluster(synthetic_adata.X.toarray(), method="kmeans", n_clusters=3)
    assert "sccluster" not in synthetic_adata.obs


def test_cluster_stores_the_training_history_as_columns(synthetic_adata, tmp_path):
    scc.pp.prepare(synthetic_adata)
    scc.tl.cluster(
        synthetic_adata, method="bgformer", n_clusters=4, pretrain_steps=20, cluster_steps=10, device="cpu"
    )
    hist = synthetic_adata.uns["sccluster"]["history"]
    assert {"stage", "step", "loss", "zinb"} <= set(hist)
    n = len(hist["step"])
    assert n > 2 and all(len(v) == n for v in hist.values())
    assert set(hist["stage"]) == {"pretrain", "cluster"} and np.isfinite(hist["loss"]).all()
    synthetic_adata.write_h5ad(tmp_path / "out.h5ad")  # the columns are writable
    back = ad.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_allclose(back.uns["sccluster"]["history"]["loss"], hist["loss"])
    scc.tl.cluster(synthetic_adata, method="kmeans", n_clusters=4)
    assert "history" not in synthetic_adata.uns["sccluster"]  # k-means has none
