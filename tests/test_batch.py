"""Batch covariates (``batch_key``): validation, per-batch scaling, balanced kNN graphs, BGFormer, SiameseClu,
the Leiden baseline, tl.cluster and the CLI.

Planted cell types under a strong batch effect (``synthetic(n_batches=3, batch_shift=1.0)``): every type
is in every batch, and each batch multiplies the mean of every gene by its own log-normal factor. The
models train on batches 0 and 1; batch 2 is held out as a batch not seen in training.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import sccluster as scc
from sccluster import InputError, cli, graph
from sccluster.data import CountSource, Scaler, read_batches
from sccluster.data._batches import stratified_indices
from sccluster.datasets import synthetic
from sccluster.metrics import ari
from sccluster.models import BGFormer, LeidenBaseline, SiameseClu
from sccluster.models._leiden import knn_graph as leiden_graph

# the small test network of test_bgformer.py, with more pretraining: the batch effect makes the planted
# types harder to reconstruct (at 300 steps one dataset of three was still mixed after pretraining)
SMALL = {
    "n_anchors": 16,
    "n_layers": 2,
    "n_heads": 2,
    "d_model": 64,
    "n_latent": 16,
    "batch_size": 128,
    "lr": 3e-3,
    "pretrain_steps": 500,
    "cluster_steps": 60,
    "device": "cpu",
}
TINY = {**SMALL, "pretrain_steps": 5, "cluster_steps": 2}
# test_siamese.py's fast SiameseClu
SIAMESE = {
    "pretrain_steps": 60,
    "cluster_steps": 40,
    "batch_size": 128,
    "n_hidden": 64,
    "n_pcs": 20,
    "device": "cpu",
}
SIAMESE_TINY = {**SIAMESE, "pretrain_steps": 5, "cluster_steps": 2}


pytestmark = pytest.mark.usefixtures("warnings_only")  # conftest.py: verbosity 1 for the module


@contextlib.contextmanager
def _warnings(caplog):
    """The package's warnings logged inside the block (its logger propagates to caplog's)."""
    with caplog.at_level("WARNING", logger="sccluster"):
        yield caplog


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
    assert (
        pd.crosstab(batched.obs["cell_type"], batched.obs["batch"]).to_numpy().min() > 20
    )  # types in all batches
    none = synthetic(n_cells=300, n_genes=100, n_clusters=3, n_batches=2, batch_shift=0.0, random_state=1)
    assert (none.X != plain.X).nnz == 0  # no shift: the same counts
    with pytest.raises(ValueError, match="n_batches"):
        synthetic(n_cells=10, n_batches=0)


# --------------------------------------------------------------------------- validation
@pytest.fixture
def small():
    adata = synthetic(
        n_cells=60, n_genes=40, n_clusters=2, n_markers=5, n_batches=2, batch_shift=1.0, random_state=0
    )
    adata.obs["donor"] = adata.obs["batch"].astype(str).to_numpy()
    return adata


def _set(adata, values):
    adata.obs["donor"] = values
    return adata


@pytest.mark.parametrize(
    ("edit", "key", "match"),
    [
        (
            lambda a: a,
            "nope",
            r"batch_key 'nope' is not a column of obs; available obs columns: 'cell_type', 'batch'",
        ),
        (lambda a: a, 3, "must be the name of an obs column"),
        (lambda a: _set(a, np.full(a.n_obs, np.nan)), "donor", r"has no values \(all 60 missing\)"),
        (
            lambda a: _set(a, [None, None, None] + ["d1"] * 57),
            "donor",
            r"missing for 3 of 60 cells; fill them in",
        ),
        (
            lambda a: _set(a, ["d0"] + ["d1"] * 59),
            "donor",
            r"batch 'd0' of obs\['donor'\] has 1 cell, but every batch needs at least 2",
        ),
        (
            lambda a: _set(a, ["a", "b"] + ["d1"] * 58),
            "donor",
            r"batch 'a' .* has 1 cell \(and 1 more batches\)",
        ),
        (
            lambda a: _set(a, [f"c{i}" for i in range(60)]),
            "donor",
            r"60 distinct values for 60 cells, so it names cells",
        ),
    ],
)
def test_bad_batches_are_one_line_input_errors(small, edit, key, match):
    adata = edit(small)
    calls = (
        lambda: read_batches(adata, key), lambda: BGFormer(2, batch_key=key, **TINY).fit(adata),
        lambda: SiameseClu(2, batch_key=key, **SIAMESE_TINY).fit(adata), lambda: LeidenBaseline(2, batch_key=key).fit(adata),
    )  # fmt: skip
    for call in calls:
        with pytest.raises(InputError, match=match) as err:
            call()
        assert "\n" not in str(err.value)


def test_more_batches_than_cells_is_an_input_error():
    adata = synthetic(n_cells=4, n_genes=20, n_clusters=2, n_markers=5, random_state=0)
    adata.obs["donor"] = pd.Categorical(
        ["a", "b", "c", "d"], categories=[f"d{i}" for i in range(9)] + list("abcd")
    )
    with pytest.raises(
        InputError, match="4 distinct values for 4 cells"
    ) as err:  # unused categories are dropped
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
    assert (
        _batch_shares(with_key.labels_, _codes(train, "batch")).max() < 0.7
    )  # every cluster mixes the batches
    assert with_key.batches_ == ["batch_0", "batch_1"]
    assert with_key.net_.decoder.n_batches == 2 and with_key.scaler_.batch_mean.shape == (2, 200)
    # training cells predicted again are scaled with their batch's training statistics: same embedding
    np.testing.assert_allclose(
        with_key.transform(train[:40].copy()), with_key.embedding_[:40], rtol=1e-4, atol=1e-5
    )


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
    change of BGFormer's training. ``noise_std=2.5`` was the default when they were computed.
    """
    adata = synthetic(n_cells=240, n_genes=60, n_clusters=3, n_markers=10, random_state=3)
    model = BGFormer(
        3, random_state=5, n_anchors=8, n_layers=1, n_heads=2, d_model=32, n_latent=8, batch_size=64,
        pretrain_steps=20, cluster_steps=5, noise_std=2.5, device="cpu",
    ).fit(adata)  # fmt: skip
    assert not any("batch" in name for name in model.net_.state_dict())
    assert model.net_.decoder.hidden[0].weight.shape == (32, 8) and model.net_.decoder.mean.weight.shape == (
        60,
        32,
    )
    assert model.scaler_.batch_mean is None and model.batches_ is None
    expected_embedding = [
        [-0.242242, -0.734548, -0.451136, -0.46005, 0.081532, 0.503133, -1.062554, 2.365864],
        [0.070402, -0.965426, -0.179951, -0.981768, 1.061913, 0.348665, -1.194871, 1.841037],
    ]
    np.testing.assert_allclose(model.embedding_[:2], expected_embedding, atol=1e-3)
    expected_q = [
        [0.242356, 0.280361, 0.477282],
        [0.521074, 0.233504, 0.245422],
        [0.459178, 0.352172, 0.188649],
    ]
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


def test_tl_cluster_kmeans_has_no_batch_correction_and_says_so(data):
    with pytest.raises(
        InputError, match="method 'kmeans' does not take batch_key .*'bgformer', 'leiden', 'siamese'"
    ) as err:
        scc.tl.cluster(data[0].copy(), method="kmeans", batch_key="batch")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("method", "params"), [("siamese", SIAMESE_TINY), ("leiden", {})])
def test_tl_cluster_records_batches_for_siamese_and_leiden(data, method, params):
    adata = data[0].copy()
    scc.tl.cluster(adata, method=method, n_clusters=4, batch_key="batch", **params)
    info = adata.uns["sccluster"]
    assert (
        info["method"] == method and info["batch_key"] == "batch" and info["params"]["batch_key"] == "batch"
    )
    assert info["n_batches"] == 2 and info["batch_sizes"].tolist() == [300, 300]
    assert 0 <= info["n_single_batch_clusters"] <= info["n_clusters"]


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
        (
            ["--batch-key", "batch", "--method", "kmeans"],
            "--method kmeans does not take --batch-key (it has no batch correction)",
        ),
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


# --------------------------------------------------------------------------- batch-balanced kNN graphs
def test_balanced_neighbors_take_the_nearest_cells_of_every_batch():
    rng = np.random.default_rng(0)
    codes = np.repeat([0, 1, 2], [50, 80, 4])  # a batch smaller than its share of neighbours
    x = rng.normal(size=(len(codes), 6)).astype(np.float32) + 6.0 * codes[:, None]  # batches far apart
    assert graph.per_batch_neighbors(15, np.bincount(codes)).tolist() == [5, 5, 3]
    idx, dist = graph.BalancedNeighborIndex(x, codes, 15).self_neighbors()
    assert (
        idx.shape == (134, 13)
        and np.all(np.diff(dist, axis=1) >= 0)
        and not (idx == np.arange(134)[:, None]).any()
    )
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    for i in (0, 60, 132):  # brute force: the 5, 5 and 3 nearest cells of each batch
        want = set()
        for b, k in enumerate((5, 5, 3)):
            members = np.flatnonzero(codes == b)
            want |= set(members[np.argsort(d2[i, members])[:k]].tolist())
        assert set(idx[i].tolist()) == want
    adj, sigma = graph.knn_graph(x, 15, batch_codes=codes)
    for i in range(len(codes)):  # SiameseClu's graph: every cell linked to every batch
        assert set(codes[adj[i].indices]) == {0, 1, 2}
    np.testing.assert_allclose(sigma, dist[:, -1])
    plain, _ = graph.knn_graph(x, 15)
    assert (
        max(len(set(codes[plain[i].indices])) for i in range(50)) == 1
    )  # without batches: its own batch only
    conn = leiden_graph(x, 0, 16, batch_codes=codes).obsp["connectivities"]  # Leiden's graph, the same rule
    assert all(set(codes[conn[i].indices]) == {0, 1, 2} for i in range(len(codes)))
    one, _ = graph.knn_graph(
        x, 15, batch_codes=np.zeros(len(codes), dtype=np.int64)
    )  # one batch: the plain graph
    assert (one != plain).nnz == 0
    q_idx, q_dist = graph.BalancedNeighborIndex(x, codes, 15).query(x[:3] + 0.01)  # new points: the same rule
    assert q_idx.shape == (3, 13) and all(
        np.bincount(codes[row], minlength=3).tolist() == [5, 5, 3] for row in q_idx
    )


# --------------------------------------------------------------------------- SiameseClu
@pytest.fixture(scope="module")
def siamese_without(data):
    return SiameseClu(4, random_state=0, **SIAMESE).fit(data[0].copy())


@pytest.fixture(scope="module")
def siamese_with(data):
    return SiameseClu(4, random_state=0, batch_key="batch", **SIAMESE).fit(data[0].copy())


def test_siamese_without_batch_key_clusters_follow_batches(siamese_without, data):
    train, _ = data
    assert _batch_shares(siamese_without.labels_, _codes(train, "batch")).max() > 0.9
    assert ari(_codes(train, "cell_type"), siamese_without.labels_) < 0.5


def test_siamese_with_batch_key_clusters_are_the_types_and_mix_batches(siamese_with, data):
    train, _ = data
    # ARI 1.0 on this dataset; >= 0.99 on synthetic(random_state=1 and 2) too
    assert ari(_codes(train, "cell_type"), siamese_with.labels_) >= 0.9
    assert _batch_shares(siamese_with.labels_, _codes(train, "batch")).max() < 0.7
    assert siamese_with.batches_ == ["batch_0", "batch_1"] and siamese_with.batch_codes_.shape == (600,)
    assert siamese_with.net_.decoder.n_batches == 2 and siamese_with.scaler_.batch_mean.shape == (2, 200)
    # training cells predicted again: scaled with their batch's statistics, attached by the balanced rule
    assert ari(siamese_with.labels_[:100], siamese_with.predict(train[:100].copy())) >= 0.9


def test_siamese_unseen_batch_at_predict_embeds_and_warns(siamese_with, data, caplog):
    _, new = data
    with _warnings(caplog):
        labels = siamese_with.predict(new)
    (record,) = [r for r in caplog.records if "not seen in training" in r.getMessage()]
    assert "'batch_2' (300 cells: own statistics)" in record.getMessage()
    assert ari(_codes(new, "cell_type"), labels) >= 0.9
    caplog.clear()
    with _warnings(caplog):
        few = siamese_with.predict(new[:20].copy())
    assert any("(20 cells: pooled training statistics)" in r.getMessage() for r in caplog.records)
    assert few.shape == (20,) and set(few) <= set(range(siamese_with.n_clusters_))
    missing = new[:10].copy()
    del missing.obs["batch"]
    with pytest.raises(InputError, match="batch_key 'batch' is not a column of obs"):
        siamese_with.transform(missing)


def test_siamese_save_load_keeps_batches(siamese_with, data, tmp_path):
    train, new = data
    path = tmp_path / "siamese.pt"
    siamese_with.save(path)
    loaded = SiameseClu.load(path, device="cpu")
    assert loaded.get_params()["batch_key"] == "batch" and loaded.batches_ == siamese_with.batches_
    np.testing.assert_array_equal(loaded.batch_codes_, siamese_with.batch_codes_)
    np.testing.assert_array_equal(
        loaded.predict(train[:200].copy()), siamese_with.predict(train[:200].copy())
    )
    np.testing.assert_array_equal(loaded.predict(new), siamese_with.predict(new))


def test_siamese_files_without_batches_still_load(data, tmp_path):
    train, _ = data
    model = SiameseClu(4, random_state=0, **SIAMESE_TINY).fit(train.copy())
    path = tmp_path / "plain.pt"
    model.save(path)
    payload = torch.load(path, weights_only=False)
    assert "batches" not in payload["state"] and "batch_codes" not in payload["state"]
    del payload["params"]["batch_key"]  # as written before batch_key existed
    torch.save(payload, path)
    old = SiameseClu.load(path, device="cpu")
    assert old.batch_key is None and old.batches_ is None
    np.testing.assert_array_equal(old.predict(train[:50].copy()), model.predict(train[:50].copy()))


def test_siamese_without_batch_key_training_is_unchanged():
    """``batch_key=None`` gives SiameseClu's results of before.

    Reference values computed at commit 4abe528 (before SiameseClu took ``batch_key``) with this very fit.
    Regenerate them only for a deliberate change of SiameseClu's training.
    """
    adata = synthetic(n_cells=240, n_genes=60, n_clusters=3, n_markers=10, random_state=3)
    model = SiameseClu(
        3, random_state=5, pretrain_steps=12, cluster_steps=6, batch_size=64, n_hidden=32, n_latent=8, n_anchors=8,
        n_pcs=10, device="cpu",
    ).fit(adata.copy())  # fmt: skip
    assert not any("batch" in name for name in model.net_.state_dict()) and model.net_.decoder.n_batches == 0
    assert model.scaler_.batch_mean is None and model.batches_ is None and model.batch_codes_ is None
    np.testing.assert_allclose(model.x0_[:2, :4].astype(np.float32), [[-0.0666, 1.6768, 1.4463, 0.481],
                                                                      [-2.4375, -1.4043, -1.1162, 0.6982]], atol=2e-3)  # fmt: skip
    np.testing.assert_allclose(model.sigma_[:3], [2.71494, 3.20931, 2.57924], atol=1e-4)
    np.testing.assert_allclose(model.degree_[:3], [7.63797, 6.95267, 8.5843], atol=1e-4)
    expected_embedding = [
        [0.161325, -0.128136, -0.312543, -0.024863, -0.016425, -0.294545, 0.449229, 0.174399],
        [0.337585, 0.162665, -0.164991, -0.115211, 0.010048, -0.457955, 0.439064, 0.613495],
    ]
    np.testing.assert_allclose(model.embedding_[:2], expected_embedding, atol=1e-3)
    expected_q = [
        [0.360366, 0.258353, 0.381281],
        [0.341618, 0.261984, 0.396398],
        [0.406292, 0.298016, 0.295692],
    ]
    np.testing.assert_allclose(model.soft_assignments_[:3], expected_q, atol=1e-3)
    assert np.bincount(model.labels_).tolist() == [99, 82, 59]
    assert model.labels_[:20].tolist() == [2, 2, 0, 0, 1, 2, 1, 2, 2, 0, 1, 2, 0, 2, 1, 0, 0, 0, 0, 1]
    expected_new = [
        [0.35932, 0.260141, 0.380539],
        [0.341559, 0.263691, 0.394751],
        [0.405952, 0.297772, 0.296276],
    ]
    np.testing.assert_allclose(model.predict_proba(adata[:3].copy()), expected_new, atol=1e-3)


# --------------------------------------------------------------------------- the Leiden baseline
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leiden_batch_key_finds_the_types_not_the_batches(seed):
    adata = synthetic(n_cells=600, n_genes=200, n_clusters=4, n_batches=2, batch_shift=1.0, random_state=seed)
    types, batches = _codes(adata, "cell_type"), _codes(adata, "batch")
    plain = LeidenBaseline(random_state=0).fit(adata.copy())  # resolution "auto"
    assert _batch_shares(plain.labels_, batches).max() > 0.9 and ari(types, plain.labels_) < 0.7
    model = LeidenBaseline(random_state=0, batch_key="batch").fit(
        adata.copy()
    )  # resolution "auto", balanced graphs
    # ARI 1.0, 1.0 (seed 1: plus one cluster of a single cell at the resolution chosen, 2.0) and 1.0
    sizes = np.bincount(model.labels_)
    assert (sizes >= 6).sum() == 4 and ari(types, model.labels_) >= 0.9
    assert _batch_shares(model.labels_, batches)[sizes >= 6].max() < 0.7 and model.batches_ == [
        "batch_0",
        "batch_1",
    ]
    given = LeidenBaseline(4, random_state=0, batch_key="batch").fit(
        adata.copy()
    )  # bisection, balanced graph
    assert given.n_clusters_ == 4 and ari(types, given.labels_) >= 0.9


def test_leiden_batch_key_ignores_pooled_x_pca(data):
    adata = data[0].copy()
    adata.obsm["X_pca"] = np.zeros(
        (adata.n_obs, 50), dtype=np.float32
    )  # scaled with pooled statistics: not used
    model = LeidenBaseline(4, random_state=0, batch_key="batch", n_pcs=10).fit(adata)
    assert model.embedding_.shape == (600, 10) and np.abs(model.embedding_).sum() > 0


def test_leiden_without_batch_key_is_unchanged():
    """``batch_key=None`` gives the Leiden baseline's results of before (values at commit 4abe528)."""
    adata = synthetic(n_cells=240, n_genes=60, n_clusters=3, n_markers=10, random_state=3)
    model = LeidenBaseline(4, random_state=2).fit(adata.copy())  # bisection: sensitive to every edge weight
    assert model.resolution_ == 1.625 and np.bincount(model.labels_).tolist() == [80, 80, 47, 33]
    assert model.labels_[:20].tolist() == [0, 1, 1, 1, 2, 1, 2, 1, 1, 1, 2, 1, 0, 1, 2, 1, 1, 0, 1, 2]
    np.testing.assert_allclose(model.embedding_[0, :4], [-0.10797, 2.7171, 2.29291, 0.73166], atol=1e-4)
    assert model.batches_ is None
