"""Leiden resolution chosen by subsample stability (``resolution="auto"``), without labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

import sccluster as scc
from sccluster import InputError
from sccluster.datasets import synthetic
from sccluster.metrics import ari
from sccluster.models import BGFormer, SiameseClu, choose_resolution
from sccluster.models._init_clusters import initial_clusters, leiden_k_labels, leiden_labels
from sccluster.models._stability import RESOLUTION_GRID


@pytest.fixture(scope="module")
def blobs():
    # three far-apart round groups: Leiden at resolution 1.0 cuts each into chunks whose borders move
    # with the sample, so only a low resolution gives reproducible clusters
    x, y = make_blobs(1200, n_features=2, centers=[[0, 0], [30, 0], [0, 30]], cluster_std=1.0, random_state=0)
    return x.astype(np.float32), y


def test_fixed_resolution_over_splits_round_groups(blobs):
    x, _ = blobs
    assert len(np.unique(leiden_labels(x, 0, resolution=1.0))) > 6


def test_auto_resolution_finds_the_planted_groups(blobs):
    x, y = blobs
    init = initial_clusters(x, None, 0, resolution="auto")
    assert init.centers.shape == (3, 2)
    labels = ((x[:, None, :] - init.centers[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert ari(y, labels) == pytest.approx(1.0)
    table = pd.DataFrame(init.resolution_table)
    # the grid, extended below 0.1 when the choice sat on its low end (it does here: 0.2 already cuts a group)
    assert list(table["resolution"]) == sorted(table["resolution"])
    assert set(RESOLUTION_GRID) <= set(table["resolution"])
    assert (init.resolution > table["resolution"].min()) or len(table) == len(RESOLUTION_GRID)
    # the chosen resolution reaches the best one's floor; every finer one falls short of it
    best = table.loc[table["stability"].idxmax()]
    floor = best["stability"] - 1.96 * best["stability_sd"] / np.sqrt(8)
    assert table.loc[table["resolution"] == init.resolution, "stability"].iloc[0] >= floor
    assert (table.loc[table["resolution"] > init.resolution, "stability"] < floor).all()


def test_choice_is_the_finest_resolution_as_stable_as_the_best():
    # five well-separated groups of 160: low resolutions find them exactly in every subsample; the
    # highest ones start cutting groups, less reproducibly, so the finest perfectly stable one wins
    x, _ = make_blobs(800, n_features=8, centers=5, cluster_std=0.5, center_box=(-50, 50), random_state=1)
    choice = choose_resolution(x.astype(np.float32), 0)
    table = pd.DataFrame(choice.table).set_index("resolution")
    perfect = table.index[table["stability"] == 1.0]
    assert choice.resolution == perfect.max() >= 0.5
    assert table.loc[choice.resolution, "n_clusters"] == 5
    assert (table.loc[table.index > choice.resolution, "stability"] < 1.0).all()


def test_grid_is_extended_below_while_the_choice_sits_on_its_low_end(blobs):
    # the three round groups are found exactly at 0.1 and below, while 0.2 cuts them unreproducibly:
    # 0.1 is the low end of this grid, so 0.05 is tried, and as 0.1 stays the finest stable choice the
    # search stops there
    x, y = blobs
    choice = choose_resolution(x, 0, grid=(0.1, 0.2))
    assert choice.resolution == 0.1
    assert [r["resolution"] for r in choice.table] == [0.05, 0.1, 0.2]
    assert ari(y, leiden_labels(x, 0, resolution=choice.resolution)) == pytest.approx(1.0)
    fixed = choose_resolution(x, 0, grid=(0.1, 0.2), extend=False)
    assert [r["resolution"] for r in fixed.table] == [0.1, 0.2]
    # not below MIN_RESOLUTION (0.01), and never above: at 1-2 these round groups fall into chunks
    # whose agreement rises with the resolution, so 2.0 stays the choice
    assert [r["resolution"] for r in choose_resolution(x, 0, grid=(0.015,)).table] == [0.015]
    high = choose_resolution(x, 0, grid=(1.0, 2.0))
    assert high.resolution == 2.0 and [r["resolution"] for r in high.table] == [1.0, 2.0]


def test_same_seed_same_choice_and_global_rng_untouched(blobs):
    x, _ = blobs
    state = np.random.get_state()[1].copy()
    a, b = choose_resolution(x, 3), choose_resolution(x, 3)
    assert a.resolution == b.resolution and a.table == b.table
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_largest_seed_is_accepted(blobs):
    x, _ = blobs
    assert choose_resolution(x[:300], 2**32 - 1, grid=(0.1, 1.0)).resolution in (0.1, 1.0)


@pytest.mark.parametrize("kwargs", [{"n_subsets": 1}, {"subset_frac": 1.5}, {"subset_frac": 0}])
def test_bad_arguments_are_input_errors(blobs, kwargs):
    x, _ = blobs
    with pytest.raises(InputError):
        choose_resolution(x, 0, **kwargs)


def test_too_few_cells_fall_back_to_resolution_one():
    x = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    choice = choose_resolution(x, 0)
    assert choice.resolution == 1.0 and choice.table == []


def test_fixed_resolution_leaves_no_table(blobs):
    x, _ = blobs
    init = initial_clusters(x, None, 0, resolution=0.1)
    assert init.resolution == 0.1 and init.resolution_table == []
    assert initial_clusters(x, 3, 0).resolution is None


@pytest.mark.parametrize("cls", [BGFormer, SiameseClu])
@pytest.mark.parametrize("value", ["fine", -1.0, 0, None])
def test_bad_resolution_is_an_input_error(cls, value):
    adata = synthetic(n_cells=100, n_genes=50, n_clusters=2, random_state=0)
    scc.pp.prepare(adata)
    with pytest.raises(InputError, match="resolution must be a positive number"):
        cls(None, resolution=value, pretrain_steps=2, cluster_steps=0, device="cpu").fit(adata)


@pytest.mark.parametrize("cls", [BGFormer, SiameseClu])
def test_models_report_the_choice_and_keep_it_when_saved(cls, tmp_path):
    adata = synthetic(n_cells=300, n_genes=100, n_clusters=3, random_state=0)
    scc.pp.prepare(adata)
    model = cls(None, random_state=0, resolution="auto", pretrain_steps=20, cluster_steps=5, device="cpu")
    model.fit(adata.copy())
    tried = [row["resolution"] for row in model.resolution_table_]
    assert model.resolution_ in tried and set(RESOLUTION_GRID) <= set(tried)
    model.save(tmp_path / "m.pt")
    loaded = cls.load(tmp_path / "m.pt", device="cpu")
    assert loaded.resolution_ == model.resolution_ and loaded.resolution_table_ == model.resolution_table_
    given = cls(3, random_state=0, pretrain_steps=5, cluster_steps=0, device="cpu").fit(adata.copy())
    assert given.resolution_ is None and given.resolution_table_ == []


@pytest.fixture(scope="module")
def uneven():
    # seven groups of very different sizes, apart in 10 dimensions
    rng = np.random.default_rng(0)
    sizes = [400, 250, 120, 60, 300, 30, 90]
    centres = rng.normal(0, 6, (len(sizes), 10))
    x = np.concatenate([c + rng.normal(0, 1, (s, 10)) for c, s in zip(centres, sizes, strict=True)]).astype(
        np.float32
    )
    return x, np.repeat(np.arange(len(sizes)), sizes)


@pytest.mark.parametrize("k", [3, 7, 12])
def test_leiden_at_k_gives_exactly_k_clusters(uneven, k):
    x, y = uneven
    labels = leiden_k_labels(x, k, 0, min_size=7)
    assert sorted(np.unique(labels)) == list(range(k))
    if k == 7:  # the planted groups, small ones included
        assert ari(y, labels) == pytest.approx(1.0)
    else:  # merges or splits of the planted groups: each cluster lies within one group, or each group within one cluster
        table = pd.crosstab(y, labels).to_numpy() > 0
        assert (table.sum(axis=0) == 1).all() if k > 7 else (table.sum(axis=1) == 1).all()


def test_leiden_start_gives_the_planted_centres_and_falls_back_to_kmeans(uneven):
    x, y = uneven
    init = initial_clusters(x, 7, 0, init="leiden")
    assert init.resolution is None and init.centers.shape == (7, 10)
    labels = ((x[:, None, :] - init.centers[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert ari(y, labels) == pytest.approx(1.0)
    few = x[::50]  # 26 cells: too few for a 15-neighbour graph, so k-means gives the centres
    assert leiden_k_labels(few, 3, 0) is None
    assert initial_clusters(few, 3, 0, init="leiden").centers.shape == (3, 10)
    with pytest.raises(InputError, match="init must be one of"):
        initial_clusters(x, 7, 0, init="random")


@pytest.mark.slow
@pytest.mark.parametrize("cls", [BGFormer, SiameseClu])
def test_rare_type_found_by_pca_leiden_is_found_by_the_deep_models(cls):
    """A planted type of 5 % of the cells that PCA + Leiden (resolution by stability) separates is a
    cluster of its own for both deep models at their defaults, with k estimated (about 3 min each)."""
    from sccluster.models import LeidenBaseline

    shares = (0.24, 0.2, 0.18, 0.16, 0.14, 0.05, 0.02, 0.01)
    adata = synthetic(4000, 2000, len(shares), n_markers=20, fold_change=4.0, proportions=shares, dropout=0.1,
                      random_state=0)  # fmt: skip
    truth = adata.obs["cell_type"].to_numpy()
    scc.pp.prepare(adata)

    def own_cluster(labels, kind="type_5"):
        tab = pd.crosstab(truth, labels)
        recall, purity = tab.loc[kind] / tab.loc[kind].sum(), tab.loc[kind] / tab.sum(axis=0)
        return bool(((recall > 0.5) & (purity > 0.5)).any())

    assert own_cluster(LeidenBaseline(random_state=0).fit(adata).labels_)
    assert own_cluster(cls(None, random_state=0, device="cpu").fit(adata).labels_)
