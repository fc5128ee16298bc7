"""Label transfer (tl.transfer_labels, LabelTransfer): planted types across batches, unknown types, save/load."""

from __future__ import annotations

import logging
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import sccluster as scc
from sccluster import InputError
from sccluster.tl import LabelTransfer
from sccluster.tl._classifier import CalibratedClassifier, fit_temperature

#: A small, fast BGFormer (the transfer path, not the model's quality, is under test here).
FAST_BGFORMER = {"pretrain_steps": 60, "d_model": 32, "n_anchors": 16, "n_latent": 8, "batch_size": 128}


@pytest.fixture(scope="module")
def _two_batches():
    data = scc.datasets.synthetic(1200, 300, 4, n_markers=25, n_batches=2, batch_shift=0.5, random_state=3)
    ref = data[data.obs["batch"] == "batch_0"].copy()
    query = data[data.obs["batch"] == "batch_1"].copy()
    truth = query.obs["cell_type"].astype(str).to_numpy()
    del query.obs["cell_type"]
    return ref, query, truth


@pytest.fixture
def two_batches(_two_batches):
    """Planted types in two batches with a gene-wise batch shift: reference = batch_0, query = batch_1 (copies)."""
    ref, query, truth = _two_batches
    return ref.copy(), query.copy(), truth.copy()


def test_pca_transfer_across_batches_names_the_planted_types(two_batches):
    ref, query, truth = two_batches
    before = query.copy()
    model = scc.tl.transfer_labels(ref, query, label_key="cell_type", method="pca", batch_key="batch")
    labels = query.obs["transferred_label"].astype(str).to_numpy()
    assert np.mean(labels == truth) > 0.95
    assert set(query.obs["transferred_label"].cat.categories) == {*np.unique(truth), "unknown"}
    proba = query.obsm["transferred_label_proba"]
    assert proba.shape == (query.n_obs, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    conf = query.obs["transferred_label_confidence"].to_numpy()
    np.testing.assert_allclose(conf, proba.max(axis=1), atol=1e-6)
    assert query.uns["transferred_label"]["method"] == "pca"
    assert list(model.classes_) == sorted(np.unique(truth))
    np.testing.assert_array_equal(before.X.toarray(), query.X.toarray())  # counts untouched
    assert "cell_type" not in query.obs


def test_a_type_missing_from_the_reference_comes_out_unknown(two_batches):
    ref, query, truth = two_batches
    missing = "cluster_2" if "cluster_2" in set(truth) else sorted(set(truth))[-1]
    ref = ref[ref.obs["cell_type"].astype(str) != missing].copy()
    scc.tl.transfer_labels(ref, query, label_key="cell_type", method="pca", batch_key="batch")
    labels = query.obs["transferred_label"].astype(str).to_numpy()
    novel = truth == missing
    assert np.mean(labels[novel] == "unknown") > 0.8
    assert np.mean(labels[~novel] == "unknown") < 0.1
    assert np.mean(labels[~novel] == truth[~novel]) > 0.9
    novelty = query.obs["transferred_label_novelty"].to_numpy()
    assert novelty[novel].mean() > 1 > np.median(novelty[~novel])


def test_bgformer_transfer_saves_and_loads_to_the_same_predictions(two_batches, tmp_path):
    ref, query, truth = two_batches
    model = scc.tl.transfer_labels(ref, query, label_key="cell_type", method="bgformer", batch_key="batch",
                                   device="cpu", **FAST_BGFORMER)  # fmt: skip
    assert np.mean(query.obs["transferred_label"].astype(str).to_numpy() == truth) > 0.8
    assert model.model_.params_["cluster_steps"] == 0  # the encoder representation
    path = tmp_path / "transfer.pt"
    model.save(path)
    loaded = LabelTransfer.load(path, device="cpu")
    again = loaded.predict(query)
    np.testing.assert_array_equal(again.labels, query.obs["transferred_label"].astype(str).to_numpy())
    np.testing.assert_allclose(again.proba, query.obsm["transferred_label_proba"], atol=1e-5)
    with pytest.raises(InputError, match="already exists"):
        model.save(path)


def test_missing_query_genes_are_read_as_zero_with_a_warning(two_batches, caplog):
    ref, query, truth = two_batches
    model = LabelTransfer("cell_type", method="pca", batch_key="batch").fit(ref)
    fewer = query[:, query.var_names[:-30]].copy()  # 10 % of the genes gone (not the planted markers)
    with caplog.at_level(logging.WARNING, logger="sccluster"):
        logging.getLogger("sccluster").addHandler(caplog.handler)
        try:
            result = model.predict(fewer)
        finally:
            logging.getLogger("sccluster").removeHandler(caplog.handler)
    assert "missing from the query" in caplog.text
    assert np.mean(result.labels == truth) > 0.9
    with pytest.raises(InputError, match="only"):
        model.predict(query[:, query.var_names[200:]].copy())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no_label_key", "is not a column"),
        ("one_class", "at least two"),
        ("disjoint_genes", "share no gene"),
        ("bad_method", "cannot transfer"),
        ("bad_threshold", "min_confidence"),
        ("query_without_batch", "batch"),
    ],
)
def test_bad_input_is_one_line_input_error_and_writes_nothing(two_batches, change, message):
    ref, query, _ = two_batches
    ref, query = ref.copy(), query.copy()
    kwargs = {"label_key": "cell_type", "method": "pca", "batch_key": "batch"}
    if change == "no_label_key":
        kwargs["label_key"] = "celltype"
    elif change == "one_class":
        ref.obs["cell_type"] = "T cell"
    elif change == "disjoint_genes":
        query.var_names = [f"other_{i}" for i in range(query.n_vars)]
    elif change == "bad_method":
        kwargs["method"] = "kmeans"
    elif change == "bad_threshold":
        kwargs["min_confidence"] = 1.5
    elif change == "query_without_batch":
        del query.obs["batch"]
    with pytest.raises(InputError, match=message) as err:
        scc.tl.transfer_labels(ref, query, **kwargs)
    assert "\n" not in str(err.value)
    assert "transferred_label" not in query.obs


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 5)) * 3
    p = np.exp(logits / 2.0)
    p /= p.sum(axis=1, keepdims=True)
    codes = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(logits, codes) == pytest.approx(2.0, rel=0.15)


def test_classifier_handles_a_class_of_one_cell():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (50, 3)), rng.normal(6, 1, (50, 3)), [[0, 9, 0]]])
    y = np.array(["a"] * 50 + ["b"] * 50 + ["c"])
    clf = CalibratedClassifier.fit(x, y, seed=0)
    assert list(clf.classes) == ["a", "b", "c"]
    pred = clf.classes[clf.predict_proba(x[:100]).argmax(axis=1)]
    assert np.mean(pred == y[:100]) > 0.95


def test_cli_transfer_writes_labels_and_the_model(two_batches, tmp_path):
    ref, query, truth = two_batches
    ref.write_h5ad(tmp_path / "ref.h5ad")
    query.write_h5ad(tmp_path / "query.h5ad")
    out, model = tmp_path / "out.h5ad", tmp_path / "model.pt"
    cmd = [sys.executable, "-m", "sccluster", "transfer", str(tmp_path / "ref.h5ad"), str(tmp_path / "query.h5ad"),
           "-o", str(out), "--label-key", "cell_type", "--method", "pca", "--batch-key", "batch",
           "--save-model", str(model)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "unknown" in res.stdout
    written = ad.read_h5ad(out)
    assert np.mean(written.obs["transferred_label"].astype(str).to_numpy() == truth) > 0.95
    # the saved model classifies a further query file
    out2 = tmp_path / "out2.h5ad"
    res = subprocess.run([sys.executable, "-m", "sccluster", "transfer", "--model", str(model),
                          str(tmp_path / "query.h5ad"), "-o", str(out2)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr
    again = ad.read_h5ad(out2)
    pd.testing.assert_series_equal(again.obs["transferred_label"], written.obs["transferred_label"])


def test_cli_transfer_bad_label_key_is_one_line_exit_2(two_batches, tmp_path):
    ref, query, _ = two_batches
    ref.write_h5ad(tmp_path / "ref.h5ad")
    query.write_h5ad(tmp_path / "query.h5ad")
    out = tmp_path / "out.h5ad"
    res = subprocess.run([sys.executable, "-m", "sccluster", "transfer", str(tmp_path / "ref.h5ad"),
                          str(tmp_path / "query.h5ad"), "-o", str(out), "--label-key", "nope", "--method", "pca"],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("error:")
    assert "nope" in res.stderr
    assert not out.exists()


def test_genes_beside_the_embedding_name_the_types_by_chunks_and_survive_save_load(
    two_batches, tmp_path, monkeypatch
):
    from sccluster.tl import _features

    ref, query, truth = two_batches
    model = LabelTransfer("cell_type", method="pca", batch_key="batch", features="embedding+genes").fit(ref)
    whole = model.predict(query)
    assert np.mean(whole.labels == truth) > 0.95
    # the classifier reads the embedding's columns and then the model's genes
    assert model.classifier_.coef.shape == (4, whole.embedding.shape[1] + len(model.genes_))
    monkeypatch.setattr(_features, "CHUNK", 50)  # many chunks: the same probabilities
    np.testing.assert_allclose(model.predict(query).proba, whole.proba, atol=1e-6)
    fewer = query[:, query.var_names[:-30]].copy()  # genes missing from the query: read as zero counts
    assert np.mean(model.predict(fewer).labels == truth) > 0.9
    path = tmp_path / "genes.pt"
    model.save(path)
    loaded = LabelTransfer.load(path)
    assert loaded.features == "embedding+genes"
    np.testing.assert_allclose(loaded.predict(query).proba, whole.proba, atol=1e-6)
    with pytest.raises(InputError, match="features"):
        LabelTransfer("cell_type", features="genes")
