"""Held-out reconstruction error of the deep models: the label-free measure of what an embedding keeps."""

from __future__ import annotations

import numpy as np
import pytest

from sccluster import InputError
from sccluster.datasets import synthetic
from sccluster.models import BGFormer, SiameseClu

pytestmark = pytest.mark.usefixtures("warnings_only")

SETTINGS = {
    BGFormer: {"n_anchors": 16, "n_layers": 2, "n_heads": 2, "d_model": 64, "n_latent": 16, "batch_size": 128,
               "lr": 3e-3},
    SiameseClu: {"batch_size": 128, "n_hidden": 64, "n_pcs": 20},
}  # fmt: skip


@pytest.fixture(scope="module")
def split():
    adata = synthetic(n_cells=700, n_genes=200, n_clusters=4, random_state=3)
    held = np.random.default_rng(0).permutation(adata.n_obs)[:150]
    train = np.setdiff1d(np.arange(adata.n_obs), held)
    return adata[train].copy(), adata[held].copy()


def fit(cls, train, steps: int):
    return cls(4, random_state=0, pretrain_steps=steps, cluster_steps=0, device="cpu", **SETTINGS[cls]).fit(
        train.copy()
    )


@pytest.mark.parametrize("cls", [BGFormer, SiameseClu])
def test_training_lowers_the_held_out_error(cls, split):
    train, held = split
    short, long = fit(cls, train, 2), fit(cls, train, 300)
    before = held.copy()
    e_short, e_long = short.reconstruction_error(held), long.reconstruction_error(held)
    assert np.isfinite(e_short) and np.isfinite(e_long) and e_long > 0
    assert e_long < 0.95 * e_short
    # the query is read, never changed; genes are matched by name, so their order does not matter
    np.testing.assert_array_equal(held.X.toarray(), before.X.toarray())
    shuffled = held[:, np.random.default_rng(1).permutation(held.n_vars)].copy()
    assert long.reconstruction_error(shuffled) == pytest.approx(e_long, rel=1e-5)
    # the mean over cells: scoring halves of the cells and averaging gives the same
    halves = [long.reconstruction_error(held[:75].copy()), long.reconstruction_error(held[75:].copy())]
    assert np.mean(halves) == pytest.approx(e_long, rel=1e-5)


def test_unfitted_model_is_an_input_error(split):
    with pytest.raises(InputError, match="not fitted"):
        BGFormer(4).reconstruction_error(split[1])
