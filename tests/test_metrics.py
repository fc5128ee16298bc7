"""Metrics: permutation invariance, Hungarian ACC equals the brute-force optimum."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sccluster import InputError, metrics


def _brute_force_acc(y_true, y_pred) -> float:
    classes = np.unique(y_true)
    clusters = np.unique(y_pred)
    best = 0
    # every injective map from clusters to classes (or classes to clusters, whichever is smaller)
    if len(clusters) <= len(classes):
        for perm in itertools.permutations(classes, len(clusters)):
            mapping = dict(zip(clusters, perm, strict=True))
            best = max(best, sum(mapping[p] == t for t, p in zip(y_true, y_pred, strict=True)))
    else:
        for perm in itertools.permutations(clusters, len(classes)):
            mapping = dict(zip(perm, classes, strict=True))
            best = max(best, sum(mapping.get(p) == t for t, p in zip(y_true, y_pred, strict=True)))
    return best / len(y_true)


@pytest.mark.parametrize("seed", range(8))
def test_hungarian_acc_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_true, n_pred = rng.integers(2, 5), rng.integers(2, 6)
    y_true = rng.integers(0, n_true, size=40)
    y_pred = rng.integers(0, n_pred, size=40)
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(_brute_force_acc(y_true, y_pred))


@pytest.mark.parametrize("name", ["ari", "nmi", "acc"])
def test_scores_invariant_to_label_permutation(name):
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 4, size=200)
    y_pred = np.where(rng.random(200) < 0.8, y_true, rng.integers(0, 4, size=200))
    perm = rng.permutation(4)
    score = getattr(metrics, name)
    assert score(y_true, perm[y_pred]) == pytest.approx(score(y_true, y_pred))
    # string labels behave like their integer codes
    assert score([f"t{v}" for v in y_true], [f"c{v}" for v in y_pred]) == pytest.approx(score(y_true, y_pred))


def test_perfect_and_shuffled():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 5, size=500)
    out = metrics.evaluate(y, (y + 3) % 5)
    assert (
        out["ari"] == pytest.approx(1.0)
        and out["nmi"] == pytest.approx(1.0)
        and out["acc"] == pytest.approx(1.0)
    )
    assert out["n_clusters"] == 5 and out["n_classes"] == 5
    shuffled = metrics.evaluate(y, rng.permutation(y))
    assert abs(shuffled["ari"]) < 0.05 and shuffled["acc"] < 0.4


def test_extra_clusters_count_as_errors():
    y_true = np.array([0, 0, 0, 1, 1, 1])
    y_pred = np.array([0, 0, 2, 1, 1, 3])
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(4 / 6)


def test_silhouette_and_evaluate_with_embedding():
    rng = np.random.default_rng(3)
    emb = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))])
    lab = np.repeat([0, 1], 50)
    assert metrics.silhouette(emb, lab) > 0.9
    assert np.isnan(metrics.silhouette(emb, np.zeros(100)))
    assert metrics.evaluate(lab, lab, embedding=emb)["silhouette"] > 0.9
    big = rng.normal(size=(3000, 3))
    assert np.isfinite(metrics.silhouette(big, rng.integers(0, 3, 3000), max_cells=500))


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="labels"):
        metrics.ari([0, 1], [0, 1, 1])


@pytest.mark.parametrize("name", ["ari", "nmi", "acc", "evaluate"])
def test_missing_labels_are_refused_in_one_line(name):
    import pandas as pd

    truth = pd.Series(pd.Categorical(["a", "b", None, "a"]))
    with pytest.raises(InputError, match="y_true has 1 missing labels"):
        getattr(metrics, name)(truth, [0, 1, 1, 0])
    keep = ~pd.isna(truth)
    assert metrics.ari(truth[keep], np.array([0, 1, 1, 0])[keep.to_numpy()]) == 1.0


def test_batch_mixing_counts_single_batch_clusters_and_entropy():
    from sccluster.metrics import batch_entropy, single_batch_clusters

    batches = np.array(["a", "b"] * 50)
    mixed = np.repeat([0, 1], 50)  # each cluster holds both batches equally
    assert (single_batch_clusters(mixed, batches), batch_entropy(mixed, batches)) == (0, pytest.approx(1.0))
    split = (batches == "b").astype(int)  # each cluster is one batch
    assert (single_batch_clusters(split, batches), batch_entropy(split, batches)) == (2, pytest.approx(0.0))
