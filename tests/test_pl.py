"""``scc.pl``: figures of a clustering and the HTML report (library and ``sccluster report``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import sccluster as scc
from sccluster import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADINGS = [
    "Run summary",
    "Parameters",
    "UMAP",
    "Cluster sizes",
    "Marker genes",
    "Annotation",
    "Agreement with labels",
    "Training curves",
    "Seed stability",
]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def _clustered_base(_demo_base):
    adata = _demo_base.copy()
    scc.pp.prepare(adata)
    scc.tl.cluster(adata, method="kmeans", n_clusters=8)
    return adata


@pytest.fixture
def clustered(_clustered_base):
    """The demo (3,000 real PBMCs, labels in obs['cell_type']) prepared and clustered by k-means (k=8)."""
    return _clustered_base.copy()


@pytest.fixture(scope="module")
def _trained_base(_synthetic_base):
    adata = _synthetic_base.copy()
    scc.pp.prepare(adata)
    scc.tl.cluster(adata, method="bgformer", n_clusters=4, pretrain_steps=20, cluster_steps=10, device="cpu")
    return adata


@pytest.fixture
def trained(_trained_base):
    """Synthetic data clustered by a tiny BGFormer fit (training history in uns['sccluster']['history'])."""
    return _trained_base.copy()


def _stability_entry(adata, key="sccluster"):
    cats = [str(c) for c in adata.obs[key].cat.categories]
    return {
        "n_seeds": 5,
        "mean_pairwise_ari": 0.87,
        "clusters": np.asarray(cats),
        "cluster_agreement": np.linspace(0.4, 1.0, len(cats)),
    }


def _slots(adata) -> tuple:
    """What a plotting function must leave unchanged."""
    info = adata.uns.get("sccluster", {})
    return (
        adata.shape,
        list(adata.obs.columns),
        list(adata.obsm),
        list(adata.uns),
        list(adata.layers),
        sorted(info),
        adata.obs["sccluster"].tolist() if "sccluster" in adata.obs else None,
    )


def _no_pyplot_figures():
    import matplotlib.pyplot as plt

    return plt.get_fignums() == []


def _assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000
    assert data.startswith(PNG_MAGIC)


def _titles(fig) -> str:
    texts = [ax.get_title() for ax in fig.axes] + ([fig._suptitle.get_text()] if fig._suptitle else [])
    return " | ".join(texts)


# --------------------------------------------------------------------------- figures
def test_cluster_sizes(clustered, tmp_path):
    from matplotlib.figure import Figure

    before = _slots(clustered)
    fig = scc.pl.cluster_sizes(clustered, save=tmp_path / "sizes.png")
    assert isinstance(fig, Figure)
    _assert_png(tmp_path / "sizes.png")
    assert _slots(clustered) == before
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == clustered.obs["sccluster"].value_counts(sort=False).tolist()
    assert _no_pyplot_figures()


def test_contingency(clustered, tmp_path):
    from matplotlib.figure import Figure

    before = _slots(clustered)
    fig = scc.pl.contingency(clustered, "cell_type", save=tmp_path / "cont.png")
    assert isinstance(fig, Figure)
    _assert_png(tmp_path / "cont.png")
    assert _slots(clustered) == before
    obs = clustered.obs
    scores = scc.metrics.evaluate(obs["cell_type"].astype(str), obs["sccluster"].astype(str))
    assert f"ARI {scores['ari']:.3f}" in _titles(fig)
    assert f"ACC {scores['acc']:.3f}" in _titles(fig)


def test_contingency_puts_matched_pairs_on_the_diagonal():
    import anndata as ad

    # clusters 0, 1, 2 are mostly labels C, A, B; label D is small and unmatched; a few cells are mixed
    clusters = ["0"] * 50 + ["1"] * 30 + ["2"] * 20
    labels = ["C"] * 45 + ["D"] * 5 + ["A"] * 28 + ["B"] * 2 + ["B"] * 19 + ["A"]
    obs = pd.DataFrame(
        {"sccluster": pd.Categorical(clusters, categories=["0", "1", "2"]), "truth": labels},
        index=[f"c{i}" for i in range(100)],
    )
    adata = ad.AnnData(obs=obs)
    fig = scc.pl.contingency(adata, "truth")
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    assert rows == ["0", "1", "2"]
    assert cols == ["C", "A", "B", "D"]
    frac = np.asarray(ax.images[0].get_array())
    assert np.all(np.argmax(frac[:, :3], axis=1) == [0, 1, 2])


def test_embedding_computes_a_umap_on_a_subsample(clustered, tmp_path):
    from matplotlib.figure import Figure

    before = _slots(clustered)
    fig = scc.pl.embedding(clustered, color=["cell_type"], max_cells=500, save=tmp_path / "umap.png")
    assert isinstance(fig, Figure)
    _assert_png(tmp_path / "umap.png")
    assert _slots(clustered) == before
    assert "X_umap" not in clustered.obsm
    assert "500 of 3,000 cells" in _titles(fig)
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()][:2] == ["sccluster", "cell_type"]
    assert _no_pyplot_figures()


def test_embedding_reuses_an_existing_umap(clustered):
    clustered.obsm["X_umap"] = np.random.default_rng(0).normal(size=(clustered.n_obs, 2)).astype(np.float32)
    before = _slots(clustered)
    fig = scc.pl.embedding(
        clustered, color="sccluster_confidence" if "sccluster_confidence" in clustered.obs else "size_factors"
    )
    assert "obsm['X_umap']" in _titles(fig)
    assert "subsample" not in _titles(fig)
    assert _slots(clustered) == before
    assert _no_pyplot_figures()  # the numeric panel's colorbar is drawn without pyplot


def test_markers(clustered, tmp_path, caplog):
    from matplotlib.figure import Figure

    # one cell on its own cluster: skipped, with a log message
    codes = clustered.obs["sccluster"].astype(str).to_numpy().copy()
    codes[0] = "lonely"
    clustered.obs["sccluster"] = pd.Categorical(codes, categories=[*map(str, range(8)), "lonely"])
    before = _slots(clustered)
    with caplog.at_level("INFO", logger="sccluster"):  # the package's logger propagates to caplog's
        fig = scc.pl.markers(clustered, n_genes=2, max_cells_per_cluster=100, save=tmp_path / "markers.png")
    assert isinstance(fig, Figure)
    _assert_png(tmp_path / "markers.png")
    assert _slots(clustered) == before
    assert "rank_genes_groups" not in clustered.uns
    assert any("lonely" in r.getMessage() and "single cell" in r.getMessage() for r in caplog.records)
    assert "lonely" not in " ".join(t.get_text() for ax in fig.axes for t in ax.get_yticklabels())


def test_training(trained, tmp_path):
    from matplotlib.figure import Figure

    before = _slots(trained)
    fig = scc.pl.training(trained, save=tmp_path / "training.png")
    assert isinstance(fig, Figure)
    _assert_png(tmp_path / "training.png")
    assert _slots(trained) == before
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("pretrain") for t in titles) and any(t.startswith("cluster") for t in titles)
    assert "loss" in [line.get_label() for line in fig.axes[0].get_lines()]


def test_training_splits_phases_without_a_step_column(trained):
    n = 9
    trained.uns["sccluster"]["history"] = {
        "phase": np.r_[np.zeros(5), np.ones(4)],
        "loss": np.linspace(3.0, 1.0, n),
        "cluster": np.r_[np.full(5, np.nan), np.linspace(0.5, 0.2, 4)],
    }
    fig = scc.pl.training(trained)
    assert [ax.get_title().split(" (")[0] for ax in fig.axes] == ["pretraining", "clustering"]
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["loss"]
    assert [line.get_label() for line in fig.axes[1].get_lines()] == ["loss", "cluster"]


def test_stability_with_a_hand_made_entry(clustered, tmp_path):
    from matplotlib.figure import Figure

    clustered.uns["sccluster"]["stability"] = _stability_entry(clustered)
    before = _slots(clustered)
    fig = scc.pl.stability(clustered, save=tmp_path / "stability.png")
    assert isinstance(fig, Figure)
    _assert_png(tmp_path / "stability.png")
    assert _slots(clustered) == before
    assert "5 seeds" in _titles(fig) and "0.870" in _titles(fig)
    heights = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(heights, np.linspace(0.4, 1.0, 8))


def test_stability_of_a_real_consensus_run(_synthetic_base):
    import inspect

    if "n_seeds" not in inspect.signature(scc.tl.cluster).parameters:
        pytest.skip("tl.cluster has no n_seeds")
    adata = _synthetic_base.copy()
    scc.pp.prepare(adata)
    scc.tl.cluster(adata, method="kmeans", n_clusters=4, n_seeds=2)
    fig = scc.pl.stability(adata)
    entry = adata.uns["sccluster"]["stability"]
    assert len(fig.axes[0].patches) == len(entry["clusters"])
    assert f"{entry['mean_pairwise_ari']:.3f}" in _titles(fig)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", ["embedding", "cluster_sizes", "markers", "training", "stability"])
def test_missing_key_raises(clustered, name):
    with pytest.raises(InputError, match="nope"):
        getattr(scc.pl, name)(clustered, key="nope")


def test_missing_key_raises_for_contingency_and_report(clustered, tmp_path):
    with pytest.raises(InputError, match="no column 'nope'"):
        scc.pl.contingency(clustered, "cell_type", key="nope")
    with pytest.raises(InputError, match="no column 'nope'"):
        scc.pl.report(clustered, tmp_path / "r.html", key="nope")
    assert not (tmp_path / "r.html").exists()


def test_unknown_label_key_raises(clustered, tmp_path):
    with pytest.raises(InputError, match="label_key 'nope' is not a column of obs"):
        scc.pl.contingency(clustered, "nope")
    with pytest.raises(InputError, match="label_key 'nope'"):
        scc.pl.report(clustered, tmp_path / "r.html", label_key="nope")
    assert list(tmp_path.iterdir()) == []


def test_no_history_raises(clustered):
    with pytest.raises(InputError, match="no training history"):
        scc.pl.training(clustered)


def test_no_stability_raises(clustered):
    with pytest.raises(InputError, match=r"n_seeds > 1"):
        scc.pl.stability(clustered)


def test_bad_save_path_and_arguments_raise(clustered, tmp_path):
    with pytest.raises(InputError, match=r"must end in \.png"):
        scc.pl.cluster_sizes(clustered, save=tmp_path / "sizes.txt")
    with pytest.raises(InputError, match="is a directory"):
        scc.pl.cluster_sizes(clustered, save=tmp_path)
    with pytest.raises(InputError, match="color 'nope'"):
        scc.pl.embedding(clustered, color=["nope"])
    with pytest.raises(InputError, match="n_genes"):
        scc.pl.markers(clustered, n_genes=0)
    with pytest.raises(InputError, match=r"must end in \.html"):
        scc.pl.report(clustered, tmp_path / "r.pdf")
    with pytest.raises(InputError, match="annotation_key 'nope'"):
        scc.pl.report(clustered, tmp_path / "r.html", annotation_key="nope")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- report
def _full_report_data(trained):
    """``trained`` with every section's data: history, stability, an annotation table, labels."""
    trained.uns["sccluster"]["stability"] = _stability_entry(trained)
    cats = [str(c) for c in trained.obs["sccluster"].cat.categories]
    names = [f"type <{c}> & co" for c in cats]  # text that must be escaped
    trained.uns["annotation"] = pd.DataFrame({"cluster": cats, "cell_type": names})
    return trained


def test_report_has_every_section_and_is_self_contained(trained, tmp_path):
    adata = _full_report_data(trained)
    before = _slots(adata)
    out = tmp_path / "report.html"
    path = scc.pl.report(
        adata, out, label_key="cell_type", annotation_key="annotation", title="PBMC <b>run</b> & co"
    )
    assert path == out
    assert _slots(adata) == before
    text = out.read_text(encoding="utf-8")
    for heading in HEADINGS:
        assert re.search(rf"<h[23]>{re.escape(heading)}</h[23]>", text), heading
    assert text.count("data:image/png;base64,") >= 6  # UMAP, sizes, markers, contingency, training, stability
    low = text.lower()
    assert "http://" not in low and "https://" not in low and "<script" not in low
    assert "PBMC &lt;b&gt;run&lt;/b&gt; &amp; co" in text and "<b>run</b>" not in text
    assert "type &lt;0&gt; &amp; co" in text
    assert "Not shown" not in text
    assert _no_pyplot_figures()


def test_report_shows_only_sections_with_data(clustered, tmp_path):
    clustered.obsm["X_umap"] = clustered.obsm["X_sccluster"][:, :2]  # reused: no UMAP computed here
    out = scc.pl.report(clustered, tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    for heading in ["Run summary", "Parameters", "UMAP", "Cluster sizes", "Marker genes"]:
        assert f">{heading}</h" in text
    for heading in ["Annotation", "Agreement with labels", "Training curves", "Seed stability"]:
        assert f">{heading}</h" not in text
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left


# --------------------------------------------------------------------------- CLI
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sccluster", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
        check=False,
    )


def test_cli_report(trained, tmp_path):
    adata = _full_report_data(trained)
    adata.obsm["X_umap"] = adata.obsm["X_sccluster"][:, :2]  # keeps the subprocess fast
    src = tmp_path / "clustered.h5ad"
    adata.write_h5ad(src)
    out = tmp_path / "report.html"
    proc = _cli(
        "report", str(src), "-o", str(out), "--label-key", "cell_type", "--annotation-key", "annotation"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    text = out.read_text(encoding="utf-8")
    for heading in HEADINGS:
        assert f">{heading}</h" in text


def test_cli_report_bad_input(trained, tmp_path):
    src = tmp_path / "clustered.h5ad"
    trained.write_h5ad(src)
    out = tmp_path / "report.html"
    proc = _cli("report", str(src), "-o", str(out), "--label-key", "nope")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --label-key 'nope' is not a column of obs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clustered.h5ad"]


@pytest.fixture
def _in_process_cli():
    """Run ``cli.main`` in this process, restoring the verbosity and warning filters it sets."""
    import warnings

    from sccluster import cli, settings

    before = settings.verbosity
    with warnings.catch_warnings():
        yield cli.main
    settings.verbosity = before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("{src} -o {tmp}/report.html --key nope", "error: --key 'nope' is not a column of obs"),
        (
            "{src} -o {tmp}/report.html --annotation-key nope",
            "error: annotation_key 'nope' is not an entry of uns",
        ),
        ("{src} -o {tmp}", "is a directory"),
        ("{src} -o {tmp}/report.pdf", "must end in .html"),
        ("{tmp}/missing.h5ad -o {tmp}/report.html", "error: file not found"),
    ],
)
def test_cli_report_bad_input_in_process(_in_process_cli, trained, tmp_path, capsys, argv, message):
    src = tmp_path / "clustered.h5ad"
    trained.write_h5ad(src)
    assert _in_process_cli(["report", *argv.format(src=src, tmp=tmp_path).split()]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clustered.h5ad"]


def test_cli_report_help(_in_process_cli, capsys):
    assert _in_process_cli(["report", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--label-key" in text and "--annotation-key" in text and "--key" in text


# --------------------------------------------------------------------------- browser
def _screenshot(chromium: str, page, shot) -> np.ndarray:
    from PIL import Image

    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            f"file://{page}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert shot.exists(), proc.stderr
    return np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)


@pytest.mark.slow
def test_report_renders_in_a_headless_browser(trained, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    out = scc.pl.report(
        _full_report_data(trained),
        tmp_path / "report.html",
        label_key="cell_type",
        annotation_key="annotation",
    )
    # the same page with its images removed: what the figures add must show in the screenshot
    stripped = tmp_path / "stripped.html"
    text = out.read_text(encoding="utf-8")
    stripped.write_text(re.sub(r'src="data:image/png;base64,[^"]*"', 'src=""', text), encoding="utf-8")
    img = _screenshot(chromium, out, tmp_path / "shot.png")
    bare = _screenshot(chromium, stripped, tmp_path / "bare.png")
    assert img.shape[:2] == (2000, 1200)

    def stats(a):
        non_white = np.any(a < 245, axis=2).mean()
        coloured = (a.max(axis=2) - a.min(axis=2) > 60).mean()  # saturated pixels: plot colours, not text
        colours = np.unique(a.reshape(-1, 3)[::7], axis=0).shape[0]
        return non_white, coloured, colours

    non_white, coloured, colours = stats(img)
    assert non_white > 0.03, f"only {non_white:.1%} of the page is not white"
    assert colours > 200, f"only {colours} distinct colours"
    assert coloured > stats(bare)[1] + 0.005, "the embedded figures did not render"
