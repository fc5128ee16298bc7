"""Tests of the Leiden and k-means baselines on planted clusters."""

from __future__ import annotations

import os

import numpy as np
import pytest

import sccluster as scc
from sccluster import InputError
from sccluster.models import KMeansBaseline, LeidenBaseline, choose_resolution, get_model_class


def _truth(adata):
    return adata.obs["cell_type"].to_numpy()


def test_registry_names():
    assert get_model_class("leiden") is LeidenBaseline
    assert get_model_class("kmeans") is KMeansBaseline


@pytest.mark.parametrize("n_clusters", [None, 4])
def test_leiden_recovers_planted_clusters(synthetic_adata, n_clusters):
    before = synthetic_adata.copy()
    model = LeidenBaseline(n_clusters).fit(synthetic_adata)
    assert scc.metrics.ari(_truth(synthetic_adata), model.labels_) >= 0.9
    assert model.labels_.shape == (600,) and model.labels_.dtype == np.int64
    assert model.embedding_.shape[0] == 600
    # the user's AnnData is never written to
    assert set(synthetic_adata.obs.columns) == set(before.obs.columns)
    assert len(synthetic_adata.obsm) == 0 and len(synthetic_adata.obsp) == 0 and len(synthetic_adata.uns) == 0


def test_leiden_chooses_its_resolution_by_stability_by_default(synthetic_adata):
    model = LeidenBaseline(n_pcs=20).fit(synthetic_adata)
    assert model.resolution == "auto"
    tried = [row["resolution"] for row in model.resolution_table_]
    assert model.resolution_ in tried and tried == sorted(tried)
    assert model.n_clusters_ == 4
    # the same choice as the rule applied to the PCA directly
    assert model.resolution_ == choose_resolution(model.embedding_, 0).resolution
    fixed = LeidenBaseline(n_pcs=20, resolution=1.0).fit(synthetic_adata)
    assert fixed.resolution_ == 1.0 and fixed.resolution_table_ == []


def test_leiden_hits_requested_k(synthetic_adata):
    model = LeidenBaseline(6, n_pcs=20).fit(synthetic_adata)
    assert model.n_clusters_ == 6 and len(np.unique(model.labels_)) == 6
    assert model.resolution_ > 0


def test_kmeans_recovers_planted_clusters(synthetic_adata):
    model = KMeansBaseline(4).fit(synthetic_adata)
    assert model.n_clusters_ == 4
    assert scc.metrics.ari(_truth(synthetic_adata), model.labels_) >= 0.9
    assert model.soft_assignments_ is None


def test_kmeans_chooses_k_without_labels(synthetic_adata):
    model = KMeansBaseline(n_pcs=20).fit(synthetic_adata)
    assert model.n_clusters_ == 4 and model.k_table_ == []


def test_kmeans_chooses_k_by_stability(synthetic_adata):
    model = KMeansBaseline(n_pcs=20, k_selection="stability").fit(synthetic_adata)
    assert model.n_clusters_ == 4
    assert scc.metrics.ari(_truth(synthetic_adata), model.labels_) >= 0.9
    table = {row["k"]: row for row in model.k_table_}
    assert sorted(table) == list(range(2, 31))
    assert table[4]["stability"] == pytest.approx(1.0) and table[4]["n_clusters"] == 4
    # every k above 4 splits a planted group somewhere different in each subsample
    assert all(table[k]["stability"] < table[4]["stability"] for k in range(5, 31))


@pytest.mark.parametrize("cls", [LeidenBaseline, KMeansBaseline])
def test_same_seed_same_labels(synthetic_adata, cls):
    k = None if cls is LeidenBaseline else 4
    a = cls(k, n_pcs=20, random_state=7).fit_predict(synthetic_adata)
    b = cls(k, n_pcs=20, random_state=7).fit_predict(synthetic_adata)
    np.testing.assert_array_equal(a, b)


def test_uses_prepared_pca(synthetic_adata):
    scc.pp.prepare(synthetic_adata, n_comps=30)
    model = KMeansBaseline(4, n_pcs=20).fit(synthetic_adata)
    np.testing.assert_array_equal(model.embedding_, synthetic_adata.obsm["X_pca"][:, :20])
    assert not np.shares_memory(model.embedding_, synthetic_adata.obsm["X_pca"])
    full = KMeansBaseline(4, n_pcs=30).fit(synthetic_adata)  # all columns, already float32: still a copy
    assert not np.shares_memory(full.embedding_, synthetic_adata.obsm["X_pca"])
    assert scc.metrics.ari(_truth(synthetic_adata), model.labels_) >= 0.9


@pytest.mark.parametrize("cls", [LeidenBaseline, KMeansBaseline])
def test_fewer_cells_than_clusters(synthetic_adata, cls):
    with pytest.raises(InputError, match="cells"):
        cls(601).fit(synthetic_adata)


def test_bad_hyperparameters(synthetic_adata):
    with pytest.raises(InputError, match="resolution"):
        LeidenBaseline(resolution=-1).fit(synthetic_adata)
    with pytest.raises(InputError, match="resolution must be a positive number or 'auto'"):
        LeidenBaseline(resolution="abc").fit(synthetic_adata)
    with pytest.raises(InputError, match="k_selection must be one of"):
        KMeansBaseline(k_selection="gap").fit(synthetic_adata)
    with pytest.raises(InputError, match="n_pcs"):
        KMeansBaseline(3, n_pcs=0).fit(synthetic_adata)
    with pytest.raises(InputError, match="not fitted"):
        KMeansBaseline(3).predict(synthetic_adata)


def test_neighbour_search_leaves_no_spinning_numba_threads():
    # numba's OpenMP layer keeps idle workers spinning after pynndescent/umap, which slowed the torch
    # training that follows a Leiden initialisation 4x; sccluster asks for the sleeping workqueue layer.
    import subprocess
    import sys

    code = (
        "import numpy as np, numba\n"
        "from sccluster.models._init_clusters import leiden_labels\n"
        "leiden_labels(np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32), 0)\n"
        "print(numba.threading_layer())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "workqueue"
