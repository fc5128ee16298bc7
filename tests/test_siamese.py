"""SiameseClu end to end on small planted-cluster data."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

import sccluster as scc
from sccluster.models import SiameseClu, get_model_class

FAST = {
    "pretrain_steps": 60,
    "cluster_steps": 40,
    "batch_size": 128,
    "n_hidden": 64,
    "n_pcs": 20,
    "device": "cpu",
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Two shared cores: one torch thread is both faster and deterministic here."""
    before = torch.get_num_threads()
    verbosity = scc.settings.verbosity
    torch.set_num_threads(1)
    scc.settings.verbosity = 1
    yield
    torch.set_num_threads(before)
    scc.settings.verbosity = verbosity


@pytest.fixture(scope="module")
def fitted(_synthetic_base):
    adata = _synthetic_base.copy()
    return adata, SiameseClu(n_clusters=4, random_state=0, **FAST).fit(adata)


def test_registered():
    assert get_model_class("siamese") is SiameseClu


def test_recovers_planted_clusters_and_loss_falls(fitted):
    adata, model = fitted
    truth = adata.obs["cell_type"].to_numpy()
    assert adjusted_rand_score(truth, model.labels_) >= 0.9
    assert model.n_clusters_ == 4
    assert model.embedding_.shape == (adata.n_obs, 32)
    np.testing.assert_allclose(model.soft_assignments_.sum(1), 1.0, atol=1e-5)
    pre = [h["loss"] for h in model.history_ if h["stage"] == "pretrain"]
    assert pre[-1] < 0.8 * pre[0]
    assert all(np.isfinite(h["loss"]) for h in model.history_)
    # learned proportions stay a distribution near the balanced truth
    assert model.proportions_.sum() == pytest.approx(1.0, abs=1e-4)
    assert model.proportions_.min() > 0.1


def test_predict_on_training_cells_agrees(fitted):
    adata, model = fitted
    pred = model.predict(adata)
    assert adjusted_rand_score(model.labels_, pred) >= 0.95
    proba = model.predict_proba(adata[:50])
    assert proba.shape == (50, 4)
    assert model.transform(adata[:7]).shape == (7, 32)
    # training cells reattached to the graph under its own normalisation land near their embedding
    z = model.transform(adata)
    rel = np.linalg.norm(z - model.embedding_, axis=1) / np.linalg.norm(model.embedding_, axis=1)
    assert np.median(rel) < 0.045


def test_new_cells_in_other_gene_order(fitted):
    adata, model = fitted
    shuffled = adata[:, adata.var_names[::-1]].copy()
    assert adjusted_rand_score(model.predict(adata), model.predict(shuffled)) == 1.0


def test_missing_genes_raise(fitted):
    adata, model = fitted
    with pytest.raises(scc.InputError, match="missing"):
        model.predict(adata[:, 10:].copy())


def test_save_load_roundtrip(fitted, tmp_path):
    adata, model = fitted
    path = tmp_path / "siamese.pt"
    model.save(path)
    loaded = SiameseClu.load(path, device="cpu")
    np.testing.assert_array_equal(loaded.labels_, model.labels_)
    np.testing.assert_array_equal(loaded.predict(adata), model.predict(adata))
    np.testing.assert_allclose(loaded.transform(adata), model.transform(adata), atol=1e-6)
    assert path.stat().st_size < 5e6


def test_seed_determinism_and_no_cells_by_cells_tensor(_synthetic_base):
    """Two fits with one seed agree exactly; no tensor anywhere has two axes as long as n_obs."""
    from torch.overrides import TorchFunctionMode

    adata = _synthetic_base
    n = adata.n_obs
    seen: list[tuple[int, ...]] = []

    class ShapeWatch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and sum(s >= n for s in out.shape) >= 2:
                seen.append(tuple(out.shape))
            return out

    params = {**FAST, "pretrain_steps": 15, "cluster_steps": 10}
    with ShapeWatch():
        a = SiameseClu(n_clusters=3, random_state=7, **params).fit(adata.copy())
    assert not seen, f"cells x cells tensors: {seen[:3]}"
    b = SiameseClu(n_clusters=3, random_state=7, **params).fit(adata.copy())
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.embedding_, b.embedding_)
    c = SiameseClu(n_clusters=3, random_state=8, **params).fit(adata.copy())
    assert not np.array_equal(a.embedding_, c.embedding_)


def test_ablation_switches(_synthetic_base):
    params = {**FAST, "pretrain_steps": 40, "cluster_steps": 20}
    model = SiameseClu(
        n_clusters=4,
        use_augmentation=False,
        use_correlation=False,
        use_fusion=False,
        use_sinkhorn=False,
        **params,
    ).fit(_synthetic_base.copy())
    assert model.n_clusters_ == 4
    assert "corr" not in model.history_[-1]
    assert model.proportions_ is None  # DEC target, no Sinkhorn proportions


@pytest.mark.slow
def test_k_estimated_without_labels(_synthetic_base):
    model = SiameseClu(n_clusters=None, **FAST).fit(_synthetic_base.copy())
    # exactly 4 clusters and ARI >= 0.995 on seeds 0-4 (chosen resolutions 0.6-1.0; checked at the default
    # proportion_estimate="sharpened"); the bounds leave room
    # for other platforms
    assert 3 <= model.n_clusters_ <= 6
    truth = _synthetic_base.obs["cell_type"].to_numpy()
    assert adjusted_rand_score(truth, model.labels_) >= 0.9


def test_bad_parameters_raise(_synthetic_base):
    with pytest.raises(scc.InputError, match="edge_drop"):
        SiameseClu(edge_drop=0.9).fit(_synthetic_base.copy())
    with pytest.raises(scc.InputError, match="marginal_relaxation"):
        SiameseClu(marginal_relaxation=0.0).fit(_synthetic_base.copy())
    with pytest.raises(scc.InputError, match="proportion_estimate"):
        SiameseClu(proportion_estimate="hard").fit(_synthetic_base.copy())
    with pytest.raises(scc.InputError, match="graph_weights"):
        SiameseClu(graph_weights="heat").fit(_synthetic_base.copy())
    with pytest.raises(scc.InputError, match="target_interval"):
        SiameseClu(target_interval=0).fit(_synthetic_base.copy())
    with pytest.raises(scc.InputError, match="max_value"):
        SiameseClu(max_value=-1.0).fit(_synthetic_base.copy())
    with pytest.raises(scc.InputError, match="noise_std"):
        SiameseClu(noise_std=-0.5).fit(_synthetic_base.copy())
    with pytest.raises(scc.InputError, match="use_fusion must be True or False"):
        SiameseClu(use_fusion="no").fit(_synthetic_base.copy())
    with pytest.raises(scc.InputError, match="init must be one of"):
        SiameseClu(init="random").fit(_synthetic_base.copy())
    with pytest.raises(scc.InputError, match="lr_schedule must be one of"):
        SiameseClu(lr_schedule="linear").fit(_synthetic_base.copy())
    with pytest.raises(scc.InputError, match="batch_size"):  # one cell has no cross-cell correlation
        SiameseClu(batch_size=1).fit(_synthetic_base.copy())


def test_fit_and_load_leave_the_callers_torch_random_stream_alone(_synthetic_base, tmp_path):
    params = {**FAST, "pretrain_steps": 5, "cluster_steps": 2}
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    model = SiameseClu(n_clusters=3, random_state=0, **params).fit(_synthetic_base.copy())
    torch.testing.assert_close(torch.rand(3), expected)
    model.save(tmp_path / "m.pt")
    torch.manual_seed(123)
    SiameseClu.load(tmp_path / "m.pt", device="cpu")
    torch.testing.assert_close(torch.rand(3), expected)


def test_set_params_after_fit_waits_for_the_next_fit(fitted, tmp_path):
    """predict and save use the hyperparameters of the fit; new ones only shape the next fit."""
    adata, model = fitted
    before = model.predict(adata[:100])
    changed = SiameseClu.load(_saved(model, tmp_path / "a.pt"), device="cpu")
    changed.set_params(n_neighbors=3, ppr_alpha=0.9, n_latent=8, n_hidden=16)
    np.testing.assert_array_equal(changed.predict(adata[:100]), before)
    reloaded = SiameseClu.load(_saved(changed, tmp_path / "b.pt"), device="cpu")
    np.testing.assert_array_equal(reloaded.predict(adata[:100]), before)
    assert reloaded.get_params()["n_latent"] == model.get_params()["n_latent"]


def _saved(model, path):
    model.save(path)
    return path


def test_undiffused_graph_features_are_rebuilt_exactly_for_new_cells(_synthetic_base):
    """With ppr_steps=0 the graph view is the PCA scores, for training and for new cells alike."""
    params = {**FAST, "pretrain_steps": 10, "cluster_steps": 0, "ppr_steps": 0}
    adata = _synthetic_base.copy()
    model = SiameseClu(n_clusters=3, random_state=0, **params).fit(adata)
    np.testing.assert_allclose(model.transform(adata), model.embedding_, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("interval", "runs"), [(100, [5, 5, 2]), (2, [2] * 6)])
def test_cluster_target_comes_from_a_snapshot_renewed_each_epoch(
    _synthetic_base, monkeypatch, interval, runs
):
    """P is computed from a frozen copy of the network, renewed with the graph views (once per epoch)
    or every ``target_interval`` steps if sooner; the copy never carries gradients."""
    from sccluster.nn import TargetSnapshot
    from sccluster.train import _loop

    copies: list[torch.nn.Module] = []

    class Recording(TargetSnapshot):
        def log_q(self, *inputs):
            out = super().log_q(*inputs)
            assert not out.requires_grad
            copies.append(self.frozen)
            return out

    monkeypatch.setattr(_loop, "TargetSnapshot", Recording)
    # 600 cells in batches of 128: 5 steps per epoch; 12 clustering steps
    params = {**FAST, "pretrain_steps": 10, "cluster_steps": 12, "target_interval": interval}
    model = SiameseClu(n_clusters=4, random_state=0, **params).fit(_synthetic_base.copy())
    lengths = [1]
    for before, after in pairwise(copies):
        if after is before:
            lengths[-1] += 1
        else:
            lengths.append(1)
    assert lengths == runs
    assert not torch.equal(copies[-1].centers, model.net_.centers)  # the live centres moved on


def test_unbalanced_sinkhorn_target_recovers_planted_clusters(_synthetic_base):
    adata = _synthetic_base.copy()
    model = SiameseClu(n_clusters=4, random_state=0, marginal_relaxation=1.0, **FAST).fit(adata)
    assert model.n_clusters_ == 4
    assert adjusted_rand_score(adata.obs["cell_type"].to_numpy(), model.labels_) >= 0.9
    assert model.proportions_.sum() == pytest.approx(1.0, abs=1e-4)


def test_leiden_start_recovers_planted_clusters(_synthetic_base):
    adata = _synthetic_base.copy()
    model = SiameseClu(n_clusters=4, random_state=0, init="leiden", **FAST).fit(adata)
    assert model.n_clusters_ == 4
    assert adjusted_rand_score(adata.obs["cell_type"].to_numpy(), model.labels_) >= 0.9


def test_soft_proportions_recover_planted_clusters(_synthetic_base):
    adata = _synthetic_base.copy()
    model = SiameseClu(n_clusters=4, random_state=0, proportion_estimate="soft", **FAST).fit(adata)
    assert adjusted_rand_score(adata.obs["cell_type"].to_numpy(), model.labels_) >= 0.9
    assert model.proportions_.sum() == pytest.approx(1.0, abs=1e-4)


def test_training_batches_never_repeat_a_cell(_synthetic_base, monkeypatch):
    """600 cells in batches of 128 do not divide evenly; a batch must still hold distinct cells
    (a repeated cell would be its own negative in the sample-correlation loss)."""
    from sccluster.data import CountSource

    seen: list[np.ndarray] = []
    original = CountSource.batch

    def recording(self, index):
        seen.append(np.asarray(index).copy())
        return original(self, index)

    monkeypatch.setattr(CountSource, "batch", recording)
    SiameseClu(n_clusters=4, random_state=0, **{**FAST, "pretrain_steps": 30, "cluster_steps": 10}).fit(
        _synthetic_base.copy()
    )
    training = [idx for idx in seen if len(idx) == FAST["batch_size"]]
    assert len(training) >= 40
    assert all(len(np.unique(idx)) == len(idx) for idx in training)
    covered = np.unique(np.concatenate(training))
    assert len(covered) == _synthetic_base.n_obs  # every cell is still visited


def test_expression_views_get_additive_noise(_synthetic_base, monkeypatch):
    """With ``noise_std`` each expression view is the scaled input plus N(0, noise_std^2) noise, drawn
    afresh for every view and step; with 0 the views are the input itself."""
    from sccluster.models._siamese_data import SiameseBatches

    diffs: list[torch.Tensor] = []
    original = SiameseBatches._augment

    def recording(self, x):
        out = original(self, x)
        diffs.append((out - x).detach())
        return out

    monkeypatch.setattr(SiameseBatches, "_augment", recording)
    params = {**FAST, "pretrain_steps": 5, "cluster_steps": 0, "feature_noise": 0.0, "gene_mask": 0.0}
    SiameseClu(n_clusters=4, noise_std=2.0, **params).fit(_synthetic_base.copy())
    assert len(diffs) == 10  # two views per step
    noise = torch.cat(diffs)
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.02)
    assert float(noise.std()) == pytest.approx(2.0, rel=0.02)
    assert not torch.equal(diffs[0], diffs[1])
    diffs.clear()
    SiameseClu(n_clusters=4, noise_std=0.0, **params).fit(_synthetic_base.copy())
    assert all(float(d.abs().max()) == 0.0 for d in diffs)


def test_cosine_schedule_anneals_each_phase_and_recovers_planted_clusters(_synthetic_base, monkeypatch):
    """``lr_schedule="cosine"`` (the default): each phase starts at ``lr`` and ends near zero, every parameter group
    (the centres' too) follows it; ``"constant"`` leaves the optimiser at ``lr``."""
    rates: list[list[float]] = []
    original = torch.optim.Adam.step

    def recording(self, *args, **kwargs):
        rates.append([g["lr"] for g in self.param_groups])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    adata = _synthetic_base.copy()
    model = SiameseClu(n_clusters=4, random_state=0, **FAST).fit(adata)  # the default
    pre, clu = rates[: FAST["pretrain_steps"]], rates[FAST["pretrain_steps"] :]
    assert len(clu) == FAST["cluster_steps"]
    for phase in (pre, clu):
        first = [r[0] for r in phase]
        assert first[0] == pytest.approx(1e-3)
        assert first[len(phase) // 2] == pytest.approx(0.5e-3)
        assert first[-1] < 0.01e-3
        assert all(a > b for a, b in pairwise(first))
    assert all(len(r) == 2 and r[0] == r[1] for r in clu)  # the centres' group anneals with the network
    assert adjusted_rand_score(adata.obs["cell_type"].to_numpy(), model.labels_) >= 0.9

    rates.clear()
    params = {**FAST, "pretrain_steps": 5, "cluster_steps": 5, "lr_schedule": "constant"}
    SiameseClu(n_clusters=4, random_state=0, **params).fit(_synthetic_base.copy())
    assert {lr for r in rates for lr in r} == {1e-3}


def test_phase_lr_is_a_half_cosine():
    from sccluster.train import phase_lr

    assert phase_lr(2.0, 0, 10) == pytest.approx(2.0)
    assert phase_lr(2.0, 5, 10) == pytest.approx(1.0)
    assert phase_lr(2.0, 9, 10) == pytest.approx(1.0 + np.cos(0.9 * np.pi))
