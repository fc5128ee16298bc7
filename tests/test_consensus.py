"""Consensus over seeds: aligned labels, per-cell agreement, per-cluster stability (no labels)."""

from __future__ import annotations

import numpy as np
import pytest

import sccluster as scc
from sccluster import InputError
from sccluster.tl._consensus import align, consensus_labels


def test_align_renames_clusters_by_overlap():
    ref = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    other = np.array([2, 2, 2, 0, 0, 1, 1, 3])  # the same partition under other names, one cell split off
    aligned = align(other, ref)
    np.testing.assert_array_equal(aligned[:7], ref[:7])
    assert aligned[7] == 3  # the unmatched cluster gets a new id, past the reference's


def test_identical_partitions_under_other_names_agree_fully():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 5, 300)
    perms = [rng.permutation(5) for _ in range(4)]
    cons = consensus_labels([p[base] for p in perms])
    assert scc.metrics.ari(base, cons.labels) == 1.0
    assert (cons.agreement == 1.0).all() and np.allclose(cons.cluster_agreement, 1.0)
    assert cons.mean_pairwise_ari == 1.0 and cons.pairwise_ari.shape == (4, 4)


def test_an_unstable_split_has_lower_agreement():
    # four groups; group 3 (cells 300-399) is cut in two at a different place by every seed, the rest
    # are found by every seed
    truth = np.repeat(np.arange(4), 100)
    parts = []
    for cut in (320, 350, 380, 340, 360):
        p = truth.copy()
        p[cut:400] = 4
        parts.append(p)
    cons = consensus_labels(parts)
    stable = cons.agreement[:300]
    assert (stable == 1.0).all()
    assert cons.agreement[300:].mean() < 0.9
    per_cluster = {int(k): cons.cluster_agreement[k] for k in np.unique(cons.labels)}
    unstable = {int(k) for k in np.unique(cons.labels[300:])}
    assert all(per_cluster[k] < 1.0 for k in unstable)
    assert all(per_cluster[k] == 1.0 for k in per_cluster if k not in unstable)
    assert cons.mean_pairwise_ari < 1.0


def test_reference_is_the_medoid_partition():
    truth = np.repeat(np.arange(3), 50)
    odd = np.zeros(150, dtype=int)  # one partition that disagrees with all others
    cons = consensus_labels([odd, truth, truth.copy(), truth[::-1][::-1]])
    assert cons.reference in (1, 2, 3)
    assert scc.metrics.ari(truth, cons.labels) == 1.0


def test_cluster_with_seeds_writes_consensus_and_stability(synthetic_adata):
    scc.tl.cluster(synthetic_adata, method="kmeans", n_clusters=4, n_pcs=20, n_seeds=3, random_state=5)
    a = synthetic_adata
    assert scc.metrics.ari(a.obs["cell_type"], a.obs["sccluster"]) >= 0.9
    agree = a.obs["sccluster_agreement"].to_numpy()
    assert agree.shape == (600,) and ((agree > 0) & (agree <= 1)).all()
    st = a.uns["sccluster"]["stability"]
    assert st["n_seeds"] == 3 and list(st["seeds"]) == [5, 6, 7] and st["reference_seed"] in (5, 6, 7)
    assert st["pairwise_ari"].shape == (3, 3) and 0.9 <= st["mean_pairwise_ari"] <= 1.0
    assert list(st["clusters"]) == list(a.obs["sccluster"].cat.categories)
    assert len(st["cluster_agreement"]) == 4
    # clusters numbered by decreasing size, as with one seed
    sizes = a.obs["sccluster"].value_counts().reindex(a.obs["sccluster"].cat.categories).to_numpy()
    assert (np.diff(sizes) <= 0).all()
    # a single seed afterwards removes the stale agreement column
    scc.tl.cluster(a, method="kmeans", n_clusters=4, n_pcs=20)
    assert "sccluster_agreement" not in a.obs and "stability" not in a.uns["sccluster"]


def test_consensus_proba_columns_follow_the_labels(synthetic_adata):
    scc.pp.prepare(synthetic_adata)
    model = scc.tl.cluster(
        synthetic_adata, method="bgformer", n_clusters=4, n_seeds=2, return_model=True,
        pretrain_steps=30, cluster_steps=10, device="cpu",
    )  # fmt: skip
    a = synthetic_adata
    proba = a.obsm["sccluster_proba"]
    assert proba.shape == (600, 4) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    labels = a.obs["sccluster"].cat.codes.to_numpy()
    assert (proba.argmax(axis=1) == labels).mean() > 0.9
    assert model.seed_ == a.uns["sccluster"]["stability"]["reference_seed"]


def test_return_model_and_load_any_model(synthetic_adata, tmp_path):
    scc.pp.prepare(synthetic_adata)
    model = scc.tl.cluster(
        synthetic_adata, method="bgformer", n_clusters=4, return_model=True, pretrain_steps=20, cluster_steps=5,
        device="cpu",
    )  # fmt: skip
    assert isinstance(model, scc.models.BGFormer)
    np.testing.assert_array_equal(model.labels_.astype(str), synthetic_adata.obs["sccluster"].to_numpy())
    out, again = scc.tl.cluster(synthetic_adata, method="kmeans", n_clusters=4, copy=True, return_model=True)
    assert again.n_clusters_ == 4 and "sccluster" in out.obs
    model.save(tmp_path / "m.pt")
    loaded = scc.models.load(tmp_path / "m.pt", device="cpu")
    assert type(loaded) is scc.models.BGFormer
    np.testing.assert_array_equal(loaded.predict(synthetic_adata), model.predict(synthetic_adata))
    with pytest.raises(InputError, match="does not exist"):
        scc.models.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(InputError, match="not a readable sccluster model"):
        scc.models.load(tmp_path / "junk.pt")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, 101])
def test_bad_n_seeds(synthetic_adata, bad):
    with pytest.raises(InputError, match="n_seeds"):
        scc.tl.cluster(synthetic_adata, method="kmeans", n_clusters=4, n_seeds=bad)
