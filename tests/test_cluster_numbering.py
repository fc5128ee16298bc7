"""Cluster numbering of the model surface: 0 is the largest cluster, empty model clusters are dropped."""

from __future__ import annotations

import numpy as np

import sccluster as scc
from sccluster.models import KMeansBaseline
from sccluster.models._base import ClusterModel


class _Fixed(ClusterModel):
    """A model whose fit returns fixed soft assignments (columns = the model's own cluster order)."""

    name = "fixed"
    supports_predict = True

    def __init__(self, n_clusters=None, *, random_state=0, proba=None):
        super().__init__(n_clusters, random_state=random_state)
        self.proba = proba

    def _fit(self, adata, *, layer):
        self.soft_assignments_ = self.proba.copy()
        self.labels_ = self.proba.argmax(axis=1)
        self.embedding_ = np.zeros((adata.n_obs, 2), dtype=np.float32)

    def _predict_proba(self, adata, *, layer):
        return self.proba[: adata.n_obs]


def _proba(model_labels: list[int], n_columns: int) -> np.ndarray:
    p = np.full((len(model_labels), n_columns), 0.1 / n_columns)
    p[np.arange(len(model_labels)), model_labels] += 0.9
    return p / p.sum(axis=1, keepdims=True)


def test_clusters_are_numbered_by_decreasing_size_and_empty_ones_dropped(synthetic_adata):
    adata = synthetic_adata[:9].copy()
    # model clusters 0: 2 cells, 1: 3 cells, 2: none, 3: 4 cells
    model_labels = [3, 1, 0, 3, 1, 3, 0, 1, 3]
    proba = _proba(model_labels, 4)
    model = _Fixed(4, proba=proba).fit(adata)
    np.testing.assert_array_equal(model.labels_, [0, 1, 2, 0, 1, 0, 2, 1, 0])
    assert model.n_clusters_ == 3
    np.testing.assert_array_equal(model.cluster_ids_, [3, 1, 0])
    kept = proba[:, [3, 1, 0]]
    np.testing.assert_allclose(model.soft_assignments_, kept / kept.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(model.confidence_, model.soft_assignments_.max(axis=1))
    # new cells are labelled in the same numbering
    np.testing.assert_array_equal(model.predict(adata), model.labels_)
    np.testing.assert_allclose(model.predict_proba(adata), model.soft_assignments_)


def test_ties_keep_the_model_order_and_a_permutation_keeps_confidences(synthetic_adata):
    adata = synthetic_adata[:6].copy()
    proba = _proba([2, 0, 1, 2, 0, 1], 3)  # three clusters of 2 cells: the numbering is the model's own
    model = _Fixed(3, proba=proba).fit(adata)
    np.testing.assert_array_equal(model.labels_, [2, 0, 1, 2, 0, 1])
    assert model.cluster_ids_ is None
    np.testing.assert_array_equal(model.soft_assignments_, proba)

    proba = _proba([1, 1, 0, 1, 2, 0], 3)  # sizes 2, 3, 1: a permutation, nothing renormalised
    model = _Fixed(3, proba=proba).fit(adata)
    np.testing.assert_array_equal(model.labels_, [0, 0, 1, 0, 2, 1])
    np.testing.assert_array_equal(model.soft_assignments_, proba[:, [1, 0, 2]])
    np.testing.assert_array_equal(model.confidence_, proba.max(axis=1))


def test_kmeans_numbers_unequal_planted_clusters_by_size(synthetic_adata):
    truth = synthetic_adata.obs["cell_type"].to_numpy()
    groups = np.unique(truth)
    keep = np.concatenate([np.flatnonzero(truth == g)[: 150 // (i + 1)] for i, g in enumerate(groups[::-1])])
    adata = synthetic_adata[np.sort(keep)].copy()  # planted groups of 150, 75, 50 and 37 cells
    model = KMeansBaseline(4, random_state=0).fit(adata)
    assert scc.metrics.ari(adata.obs["cell_type"].to_numpy(), model.labels_) >= 0.9
    assert np.all(np.diff(np.bincount(model.labels_)) <= 0)


class _Hard(ClusterModel):
    """A model with hard labels only (no soft assignments): a threshold on the library size."""

    name = "hard"
    supports_predict = True
    supports_save = True

    def _fit(self, adata, *, layer):
        total = np.asarray(adata.X.sum(axis=1)).ravel()
        self.cut_ = float(np.quantile(total, 0.25))
        self.labels_ = self._predict(adata, layer=layer)
        self.embedding_ = total[:, None]

    def _predict(self, adata, *, layer):
        return (np.asarray(adata.X.sum(axis=1)).ravel() > self.cut_).astype(np.int64)

    def _get_state(self):
        return {"cut": self.cut_}

    def _set_state(self, state, device):
        self.cut_ = state["cut"]


def test_a_model_without_soft_assignments_predicts_in_the_new_numbering(synthetic_adata, tmp_path):
    model = _Hard().fit(synthetic_adata)
    raw = model._predict(synthetic_adata, layer=None)  # the model's own numbering: 1 holds ~3/4 of the cells
    np.testing.assert_array_equal(model.labels_, 1 - raw)
    assert np.bincount(model.labels_)[0] > 400
    np.testing.assert_array_equal(model.predict(synthetic_adata), model.labels_)
    model.save(tmp_path / "hard.pt")
    np.testing.assert_array_equal(_Hard.load(tmp_path / "hard.pt").predict(synthetic_adata), model.labels_)


def test_siamese_proportions_follow_the_label_order():
    from sccluster.models import SiameseClu

    model = SiameseClu(4)
    model.proportions_ = np.array([0.1, 0.2, 0.3, 0.4])
    model._reorder_clusters(np.array([3, 1, 0]))  # model cluster 2 emptied, 3 the largest
    np.testing.assert_allclose(model.proportions_, np.array([0.4, 0.2, 0.1]) / 0.7)
