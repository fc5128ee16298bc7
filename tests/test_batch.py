"""Batch covariates (``batch_key``): validation, per-batch scaling, BGFormer, tl.cluster and the CLI.

Planted cell types under a strong batch effect (``synthetic(n_batches=3, batch_shift=1.0)``): every type
is in every batch, and each batch multiplies the mean of every gene by its own log-normal factor. The
models train on batches 0 and 1; batch 2 is held out as a batch not seen in training.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import sccluster as scc
from sccluster import InputError, cli
from sccluster.data import CountSource, Scaler, read_batches
from sccluster.data._batches import stratified_indices
from sccluster.datasets import synthetic
from sccluster.metrics import ari
from sccluster.models import BGFormer

# the small test network of test_bgformer.py, with more pretraining: the batch effect makes the planted
# types harder to reconstruct (at 300 steps one dataset of three was still mixed after pretraining)
SMALL = dict(
    n_anchors=16, n_layers=2, n_heads=2, d_model=64, n_latent=16, batch_size=128, lr=3e-3,
    pretrain_steps=500, cluster_steps=60, device="cpu",
)
TINY = {**SMALL, "pretrain_steps": 5, "cluster_steps": 2}


@pytest.fixture(scope="module", autouse=True)
def _quiet():
    old = scc.settings.verbosity
    scc.settings.verbosity = 1
    yield
    scc.settings.verbosity = old


@contextlib.contextmanager
def _warnings(caplog):
    """The package's warnings logged inside the block (its logger does not propagate to caplog's)."""
    logger = logging.getLogger("sccluster")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("WARNING", logger="sccluster"):
            yield caplog
    finally:
        logger.removeHandler(caplog.handler)


@pytest.fixture(scope="module")
def data():
    adata = synthetic(n_cells=900, n_genes=200, n_clusters=4, n_batches=3, batch_shift=1.0, random_state=0)
    seen = (adata.obs["batch"] != "batch_2").to_numpy()
    return adata[seen].copy(), adata[~seen].copy()


@pytest.fixture(scope="module")
def without_key(data):
    train, _ = data
    return BGFormer(4, random_state=0, **SMALL).fit(train.copy())


@pytest.fixture(scope="module")
def with_key(data):
    train, _ = data
    return BGFormer(None, random_state=0, batch_key="batch", **SMALL).fit(train.copy())  # k estimated


def _codes(adata, key):
    return adata.obs[key].cat.codes.to_numpy()


def _batch_shares(labels, batches):
    """Largest share of one batch in each cluster (clusters in label order)."""
    table = pd.crosstab(labels, batches).to_numpy()
    return table.max(axis=1) / table.sum(axis=1)


# --------------------------------------------------------------------------- synthetic data
def test_synthetic_batches_and_defaults_unchanged():
    plain = synthetic(n_cells=300, n_genes=100, n_clusters=3, random_state=1)
    assert list(plain.obs.columns) == ["cell_type"]
    batched = synthetic(n_cells=300, n_genes=100, n_clusters=3, n_batches=3, batch_shift=1.0, random_state=1)
    # the batches come from a stream of their own: same types, and only the counts' means change
    np.testing.assert_array_equal(_codes(batched, "cell_type"), _codes(plain, "cell_type"))
    assert batched.obs["batch"].value_counts().tolist() == [100, 100, 100]
    assert pd.crosstab(batched.obs["cell_type"], batched.obs["batch"]).to_numpy().min() > 20  # types in all batches
    none = synthetic(n_cells=300, n_genes=100, n_clusters=3, n_batches=2, batch_shift=0.0, random_state=1)
    assert (none.X != plain.X).nnz == 0  # no shift: the same counts
    with pytest.raises(ValueError, match="n_batches"):
        synthetic(n_cells=10, n_batches=0)


# --------------------------------------------------------------------------- validation
@pytest.fixture
def small():
    adata = synthetic(n_cells=60, n_genes=40, n_clusters=2, n_markers=5, n_batches=2, batch_shift=1.0, random_state=0)
    adata.obs["donor"] = adata.obs["batch"].astype(str).to_numpy()
    return adata


def _set(adata, values):
    adata.obs["donor"] = values
    return adata


@pytest.mark.parametrize(
    ("edit", "key", "match"),
    [
        (lambda a: a, "nope", r"batch_key 'nope' is not a column of obs; available obs columns: 'cell_type', 'batch'"),
        (lambda a: a, 3, "must be the name of an obs column"),
        (lambda a: _set(a, np.full(a.n_obs, np.nan)), "donor", r"has no values \(all 60 missing\)"),
        (lambda a: _set(a, [None, None, None] + ["d1"] * 57), "donor", r"missing for 3 of 60 cells; fill them in"),
        (lambda a: _set(a, ["d0"] + ["d1"] * 59), "donor", r"batch 'd0' of obs\['donor'\] has 1 cell, but every batch needs at least 2"),
        (lambda a: _set(a, ["a", "b"] + ["d1"] * 58), "donor", r"batch 'a' .* has 1 cell \(and 1 more batches\)"),
        (lambda a: _set(a, [f"c{i}" for i in range(60)]), "donor", r"60 distinct values for 60 cells, so it names cells"),
    ],
)
def test_bad_batches_are_one_line_input_errors(small, edit, key, match):
    adata = edit(small)
    for call in (lambda: read_batches(adata, key), lambda: BGFormer(2, batch_key=key, **TINY).fit(adata)):
        with pytest.raises(InputError, match=match) as err:
            call()
        assert "\n" not in str(err.value)


def test_more_batches_than_cells_is_an_input_error():
    adata = synthetic(n_cells=4, n_genes=20, n_clusters=2, n_markers=5, random_state=0)
    adata.obs["donor"] = pd.Categorical(["a", "b", "c", "d"], categories=[f"d{i}" for i in range(9)] + list("abcd"))
    with pytest.raises(InputError, match="4 distinct values for 4 cells") as err:  # unused categories are dropped
        read_batches(adata, "donor")
    assert "\n" not in str(err.value)


def test_batches_of_any_dtype_and_one_batch_warns(small, caplog):
    small.obs["donor"] = np.where(small.obs["batch"] == "batch_0", 7, 11)  # integers
    batches = read_batches(small, "donor")
    assert batches.categories == ["7", "11"] and batches.n_cells.tolist() == [30, 30]
    assert batches.codes.dtype == np.int64 and batches.codes.shape == (60,)
    small.obs["donor"] = "all"
    with _warnings(caplog):
        model = BGFormer(2, batch_key="donor", **TINY).fit(small)
    assert any("one batch" in r.getMessage() and "no effect" in r.getMessage() for r in caplog.records)
    assert model.batches_ == ["all"] and model.labels_.shape == (60,)


# --------------------------------------------------------------------------- per-batch scaling
def test_scaler_statistics_per_batch_match_dense_computation(small):
    batches = read_batches(small, "donor")
    source = CountSource(small, batch_codes=batches.codes)
    scaler = Scaler.fit(source, batch_codes=batches.codes, n_batches=2)
    pooled = Scaler.fit(source)
    np.testing.assert_allclose(scaler.mean, pooled.mean, rtol=1e-5)
    np.testing.assert_allclose(scaler.std, pooled.std, rtol=1e-5)
    x = np.log1p(small.X.toarray() / source.size_factors[:, None])
    for b in range(2):
        rows = x[batches.codes == b]
        std = rows.std(axis=0, ddof=1)
        np.testing.assert_allclose(scaler.batch_mean[b], rows.mean(axis=0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(scaler.batch_std[b], np.where(std == 0, 1, std), rtol=1e-4, atol=1e-6)
    mb = source.batch(np.arange(10, 50))
    scaled = scaler.transform(mb.counts, mb.size_factors, mb.batch_codes)
    torch_scaled = scaler.transform_torch(
        torch.from_numpy(mb.counts), torch.from_numpy(mb.size_factors), torch.from_numpy(mb.batch_codes)
    )
    np.testing.assert_allclose(scaled, torch_scaled.numpy(), rtol=1e-5, atol=1e-5)
    # a pure per-batch shift is removed: each batch's scaled genes are centred
    full = source.batch(np.arange(60))
    z = scaler.transform(full.counts, full.size_factors, full.batch_codes)
    for b in range(2):
        assert np.abs(z[batches.codes == b].mean(axis=0)).max() < 1e-4
    assert Scaler.from_state_dict(scaler.state_dict()).batch_mean.shape == (2, 40)


def test_stratified_subsample_keeps_small_batches():
    codes = np.r_[np.zeros(5000, dtype=np.int64), np.ones(30, dtype=np.int64)]
    rng = np.random.default_rng(0)
    base = np.sort(rng.choice(len(codes), 500, replace=False))
    idx = stratified_indices(codes, base, rng, min_per_batch=100)
    assert np.isin(base, idx).all() and np.all(np.diff(idx) > 0)
    assert np.bincount(codes[idx]).tolist()[1] == 30  # the small batch: all its cells
    assert np.bincount(codes[idx])[0] == np.bincount(codes[base])[0]  # the big one: as sampled


# --------------------------------------------------------------------------- the model
def test_without_batch_key_clusters_follow_batches(without_key, data):
    train, _ = data
    labels, types = without_key.labels_, _codes(train, "cell_type")
    shares = _batch_shares(labels, _codes(train, "batch"))
    one_batch = np.flatnonzero(shares > 0.9)
    assert one_batch.size  # clusters of one batch ...
    per_batch = pd.crosstab(types, _codes(train, "batch")).to_numpy()  # types x batches
    for cluster in one_batch:  # ... whose cell type is in every batch (each type has >= 60 cells in each)
        majority = np.bincount(types[labels == cluster]).argmax()
        assert per_batch[majority].min() >= 60
    assert ari(types, labels) < 0.5


def test_with_batch_key_clusters_are_the_types_and_mix_batches(with_key, data):
    train, _ = data
    assert with_key.n_clusters_ == 4  # k estimated: the 4 types, not types x batches
    assert ari(_codes(train, "cell_type"), with_key.labels_) >= 0.9
    assert _batch_shares(with_key.labels_, _codes(train, "batch")).max() < 0.7  # every cluster mixes the batches
    assert with_key.batches_ == ["batch_0", "batch_1"]
    assert with_key.net_.decoder.n_batches == 2 and with_key.scaler_.batch_mean.shape == (2, 200)
    # training cells predicted again are scaled with their batch's training statistics: same embedding
    np.testing.assert_allclose(with_key.transform(train[:40].copy()), with_key.embedding_[:40], rtol=1e-4, atol=1e-5)


def test_unseen_batch_at_predict_embeds_and_warns(with_key, data, caplog):
    _, new = data
    truth = _codes(new, "cell_type")
    with _warnings(caplog):
        labels = with_key.predict(new)  # 300 cells: scaled with the batch's own statistics
    (record,) = [r for r in caplog.records if "not seen in training" in r.getMessage()]
    assert "'batch_2' (300 cells: own statistics)" in record.getMessage()
    assert ari(truth, labels) >= 0.9
    caplog.clear()
    with _warnings(caplog):
        few = with_key.predict(new[:20].copy())  # under 50 cells: the pooled training statistics
    assert any("(20 cells: pooled training statistics)" in r.getMessage() for r in caplog.records)
    assert few.shape == (20,) and set(few) <= set(range(with_key.n_clusters_))


def test_predict_needs_the_batch_column(with_key, data):
    _, new = data
    missing = new[:10].copy()
    del missing.obs["batch"]
    with pytest.raises(InputError, match="batch_key 'batch' is not a column of obs") as err:
        with_key.predict(missing)
    assert "\n" not in str(err.value)
    partial = new[:10].copy()
    partial.obs["batch"] = [None] + ["batch_0"] * 9
    with pytest.raises(InputError, match="missing for 1 of 10 cells"):
        with_key.transform(partial)


def test_save_load_keeps_batches(with_key, data, tmp_path):
    train, new = data
    path = tmp_path / "batched.pt"
    with_key.save(path)
    loaded = BGFormer.load(path, device="cpu")
    assert loaded.get_params()["batch_key"] == "batch" and loaded.batches_ == with_key.batches_
    np.testing.assert_array_equal(loaded.scaler_.batch_mean, with_key.scaler_.batch_mean)
    np.testing.assert_array_equal(loaded.predict(train), with_key.predict(train))
    np.testing.assert_array_equal(loaded.predict(new), with_key.predict(new))


def test_model_files_without_batches_still_load(data, tmp_path):
    train, _ = data
    model = BGFormer(4, random_state=0, **TINY).fit(train.copy())
    path = tmp_path / "plain.pt"
    model.save(path)
    payload = torch.load(path, weights_only=False)
    assert "n_batches" not in payload["state"]["arch"] and "batches" not in payload["state"]
    del payload["params"]["batch_key"]  # as written before batch_key existed
    torch.save(payload, path)
    old = BGFormer.load(path, device="cpu")
    assert old.batch_key is None and old.batches_ is None
    np.testing.assert_array_equal(old.predict(train), model.predict(train))


def test_without_batch_key_training_is_unchanged():
    """``batch_key=None`` builds the network, draws the random numbers and gives the results of before.

    Reference values computed at commit ef846c7 (before ``batch_key`` existed) with this very fit: 25 steps,
    so labels and embedding still depend on every random draw. Regenerate them only for a deliberate
    change of BGFormer's training.
    """
    adata = synthetic(n_cells=240, n_genes=60, n_clusters=3, n_markers=10, random_state=3)
    model = BGFormer(
        3, random_state=5, n_anchors=8, n_layers=1, n_heads=2, d_model=32, n_latent=8, batch_size=64,
        pretrain_steps=20, cluster_steps=5, device="cpu",
    ).fit(adata)  # fmt: skip
    assert not any("batch" in name for name in model.net_.state_dict())
    assert model.net_.decoder.hidden[0].weight.shape == (32, 8) and model.net_.decoder.mean.weight.shape == (60, 32)
    assert model.scaler_.batch_mean is None and model.batches_ is None
    expected_embedding = [
        [-0.242242, -0.734548, -0.451136, -0.46005, 0.081532, 0.503133, -1.062554, 2.365864],
        [0.070402, -0.965426, -0.179951, -0.981768, 1.061913, 0.348665, -1.194871, 1.841037],
    ]
    np.testing.assert_allclose(model.embedding_[:2], expected_embedding, atol=1e-3)
    expected_q = [[0.242356, 0.280361, 0.477282], [0.521074, 0.233504, 0.245422], [0.459178, 0.352172, 0.188649]]
    np.testing.assert_allclose(model.soft_assignments_[:3], expected_q, atol=1e-3)
    assert np.bincount(model.labels_).tolist() == [102, 95, 43]
    assert model.labels_[:20].tolist() == [2, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 2, 0, 1, 0, 0, 1, 0, 1]


# --------------------------------------------------------------------------- tl.cluster and the CLI
def test_tl_cluster_records_batches(data):
    train, _ = data
    adata = train.copy()
    scc.tl.cluster(adata, method="bgformer", n_clusters=4, batch_key="batch", **TINY)
    info = adata.uns["sccluster"]
    assert info["batch_key"] == "batch" and info["params"]["batch_key"] == "batch"
    assert info["n_batches"] == 2 and list(info["batches"]) == ["batch_0", "batch_1"]
    assert info["batch_sizes"].tolist() == [300, 300]
    assert 0 <= info["n_single_batch_clusters"] <= info["n_clusters"]


@pytest.mark.parametrize("method", ["siamese", "leiden", "kmeans"])
def test_tl_cluster_methods_without_batch_key_say_so(data, method):
    with pytest.raises(InputError, match=f"method '{method}' does not take batch_key yet; .*'bgformer'") as err:
        scc.tl.cluster(data[0].copy(), method=method, batch_key="batch")
    assert "\n" not in str(err.value)


def test_tl_cluster_checks_batches_before_fitting(data, monkeypatch):
    adata = data[0].copy()
    adata.obs["batch"] = adata.obs["batch"].astype(object)
    adata.obs.iloc[:5, adata.obs.columns.get_loc("batch")] = None
    monkeypatch.setattr(BGFormer, "fit", lambda *a, **k: pytest.fail("fitted despite bad batches"))
    with pytest.raises(InputError, match="missing for 5 of 600 cells"):
        scc.tl.cluster(adata, batch_key="batch")


@pytest.fixture(scope="module")
def batched_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("batch_cli") / "in.h5ad"
    adata = synthetic(n_cells=300, n_genes=100, n_clusters=3, n_batches=2, batch_shift=1.0, random_state=1)
    adata.obs["empty"] = np.nan
    adata.write_h5ad(path)
    return path


def test_cli_batch_key_end_to_end(batched_file, tmp_path):
    out = tmp_path / "out.h5ad"
    params = ["pretrain_steps=40", "cluster_steps=20", "d_model=32", "n_anchors=8", "batch_size=128"]
    proc = subprocess.run(
        [sys.executable, "-m", "sccluster", "cluster", str(batched_file), "-o", str(out), "--method", "bgformer",
         "--n-clusters", "3", "--batch-key", "batch", *[a for p in params for a in ("--param", p)]],
        capture_output=True, text=True, timeout=600, env=dict(os.environ), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "batches   2 in obs['batch']" in proc.stdout, proc.stdout
    result = ad.read_h5ad(out)
    info = result.uns["sccluster"]
    assert info["batch_key"] == "batch" and info["params"]["batch_key"] == "batch" and info["n_batches"] == 2
    assert result.obs["batch"].tolist() == ad.read_h5ad(batched_file).obs["batch"].tolist()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--batch-key", "nope"], "--batch-key 'nope' is not a column of obs"),
        (["--batch-key", "empty"], "obs['empty'] has no values"),
        (["--batch-key", "batch", "--method", "kmeans"], "--method kmeans does not take --batch-key yet"),
        (["--batch-key", "batch", "--key-added", "batch"], "--batch-key and --key-added are both 'batch'"),
        (["--param", "batch_key=batch"], "set batch_key with --batch-key"),
    ],
)
def test_cli_bad_batch_key_exits_2_and_writes_nothing(batched_file, tmp_path, capsys, argv, match):
    out = tmp_path / "out.h5ad"
    code = cli.main(["cluster", str(batched_file), "-o", str(out), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == []
