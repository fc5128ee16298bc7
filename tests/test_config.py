"""Hyperparameters as configuration objects: validation, flat keywords and documentation."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

import sccluster as scc
from sccluster import InputError
from sccluster.models import BGFormer, SiameseClu
from sccluster.models._bgformer_config import BGFormerConfig
from sccluster.models._config import validate
from sccluster.models._siamese_config import SiameseConfig
from sccluster.ot import BalancedTarget

MODELS = [(BGFormer, BGFormerConfig), (SiameseClu, SiameseConfig)]


@pytest.mark.parametrize(("cls", "config"), MODELS)
def test_constructor_is_the_configuration(cls, config):
    """Every field of every group is a keyword of the estimator, with the field's default, documented once."""
    fields = [f for f, _ in config.fields()]
    params = inspect.signature(cls).parameters
    run = {
        "random_state": 0,
        "device": "auto",
        "checkpoint_dir": None,
        "checkpoint_every": 500,
        "resume": False,
    }
    assert list(params) == ["n_clusters", *(f.name for f in fields), *run]
    assert all(params[f.name].default == f.default for f in fields)
    defaults = {f.name: f.default for f in fields}
    assert cls().get_params() == {"n_clusters": None, **defaults, **run}
    doc = cls.__doc__
    for name in params:
        assert doc.count(f"\n{name}\n") == 1, name
    assert "{config}" not in doc and "{checkpoints}" not in doc
    with pytest.raises(TypeError, match="bogus"):
        cls(bogus=1)
    with pytest.raises(TypeError):
        cls(3, 4)  # only n_clusters is positional


@pytest.mark.parametrize(("cls", "config"), MODELS)
def test_default_configuration_is_valid_and_grouped(cls, config):
    cfg = config.from_params(cls().get_params())
    for group in dataclasses.fields(cfg):
        validate(getattr(cfg, group.name))
    assert cfg.optimisation.lr == 1e-3
    model = cls(lr=0.5).set_params(batch_size=64)
    assert config.from_params(model.get_params()).optimisation.batch_size == 64


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (BGFormer, {"lr_schedule": "step"}, "lr_schedule must be one of ('constant', 'cosine'), got 'step'"),
        (BGFormer, {"target": "kmeans"}, "target must be one of ('dec', 'balanced'), got 'kmeans'"),
        (BGFormer, {"n_anchors": 0}, "n_anchors must be an integer >= 1, got 0"),
        (BGFormer, {"batch_size": 2.5}, "batch_size must be an integer >= 1, got 2.5"),
        (BGFormer, {"dropout": 1.0}, "dropout must be a number >= 0.0 and < 1.0, got 1.0"),
        (BGFormer, {"early_stopping": "yes"}, "early_stopping must be True or False, got 'yes'"),
        (BGFormer, {"max_value": "10"}, "max_value must be a number > 0.0, got '10'"),
        (BGFormer, {"resolution": 0}, "resolution must be a positive number or 'auto', got 0"),
        (BGFormer, {"d_model": 30, "n_heads": 4}, "d_model=30 must be divisible by n_heads=4"),
        (
            SiameseClu,
            {"proportion_estimate": "hard"},
            "proportion_estimate must be one of ('soft', 'sharpened'), got 'hard'",
        ),
        (
            SiameseClu,
            {"graph_weights": "heat"},
            "graph_weights must be one of ('adaptive', 'binary'), got 'heat'",
        ),
        (SiameseClu, {"init": "random"}, "init must be one of ('kmeans', 'leiden'), got 'random'"),
        (SiameseClu, {"marginal_relaxation": 0.0}, "marginal_relaxation must be a number > 0.0, got 0.0"),
        (SiameseClu, {"batch_size": 1}, "batch_size must be an integer >= 2, got 1"),
        (SiameseClu, {"use_fusion": "no"}, "use_fusion must be True or False, got 'no'"),
        (SiameseClu, {"ppr_alpha": 0.0}, "ppr_alpha must be a number > 0.0 and <= 1.0, got 0.0"),
    ],
)
def test_bad_values_are_one_line_input_errors(cls, params, message, synthetic_adata):
    with pytest.raises(InputError) as err:
        cls(3, **params).fit(synthetic_adata[:50].copy())
    assert str(err.value) == message


def test_none_passes_only_where_the_type_allows_it():
    SiameseConfig.from_params({**SiameseClu().get_params(), "marginal_relaxation": None, "max_value": None})
    with pytest.raises(InputError, match="lr must be a number > 0.0, got None"):
        SiameseConfig.from_params({**SiameseClu().get_params(), "lr": None})


def test_balanced_target_defaults_are_those_of_siamese():
    """One source of truth: BGFormer(target="balanced") builds the target SiameseClu uses by default."""
    target = BalancedTarget(torch.tensor([0.5, 0.5]))
    defaults = SiameseClu().get_params()
    assert (target.estimate, target.n_iters, target.power, target.momentum) == (
        defaults["proportion_estimate"], defaults["sinkhorn_iters"], defaults["sinkhorn_power"],
        defaults["proportion_momentum"],
    )  # fmt: skip
    assert target.estimate == "sharpened" and target.n_iters == 50


def test_bgformer_balanced_target_uses_the_sharpened_estimate(synthetic_adata, monkeypatch):
    built = []
    original = BalancedTarget.from_log_q.__func__

    def spy(cls, log_q, device=None, **kwargs):
        target = original(cls, log_q, device, **kwargs)
        built.append(target)
        return target

    monkeypatch.setattr(BalancedTarget, "from_log_q", classmethod(spy))
    params = {"n_anchors": 8, "n_layers": 1, "n_heads": 2, "d_model": 32, "n_latent": 8, "batch_size": 128,
              "pretrain_steps": 5, "cluster_steps": 3, "device": "cpu"}  # fmt: skip
    scc.settings.verbosity, before = 1, scc.settings.verbosity
    try:
        BGFormer(4, target="balanced", random_state=0, **params).fit(synthetic_adata)
    finally:
        scc.settings.verbosity = before
    (target,) = built
    assert (target.estimate, target.n_iters, target.momentum) == ("sharpened", 50, 0.99)
