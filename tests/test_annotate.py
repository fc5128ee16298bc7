"""``scc.tl.markers`` / ``scc.tl.annotate`` / shipped marker sets and ``sccluster markers | annotate``.

Planted synthetic data: clusters "0"-"3" over-express their own named genes (cluster k: ``Mk<k>g<i>``, mouse
capitalisation), cluster "4" over-expresses genes no marker set names, so it must stay "unassigned".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import sccluster as scc
from sccluster import InputError
from sccluster.tl._annotate import bh_adjust

N_PLANTED = 5  # clusters; the last has no marker set
SETS = {  # 6 of the 20 planted markers of clusters 0-3, plus a gene the data lack
    "alpha cell": [f"Mk0g{i}" for i in range(6)] + ["Notagene1"],
    "beta cell": [f"Mk1g{i}" for i in range(6)],
    "gamma cell": [f"Mk2g{i}" for i in range(6)],
    "delta cell": [f"Mk3g{i}" for i in range(6)],
}
EXPECTED = {"0": "alpha cell", "1": "beta cell", "2": "gamma cell", "3": "delta cell", "4": "unassigned"}
TABLE_COLUMNS = [
    "cluster",
    "n_cells",
    "cell_type",
    "best_match",
    "score",
    "z",
    "pval",
    "pval_adj",
    "runner_up",
    "runner_up_score",
    "margin",
    "n_markers",
    "n_found",
    "markers_found",
    "markers_missing",
]


def _planted(prepare: bool = True):
    adata = scc.datasets.synthetic(
        n_cells=800,
        n_genes=300,
        n_clusters=N_PLANTED,
        n_markers=20,
        fold_change=4.0,
        proportions=[0.3, 0.25, 0.2, 0.15, 0.1],
        random_state=3,
    )
    names = [f"Mk{j // 20}g{j % 20}" if j < 20 * N_PLANTED else f"Gene{j}" for j in range(adata.n_vars)]
    adata.var_names = names
    adata.obs["cluster"] = pd.Categorical(
        adata.obs["cell_type"].str.replace("type_", ""), categories=[str(k) for k in range(N_PLANTED)]
    )
    del adata.obs["cell_type"]  # annotation never reads labels: the planted truth is only in EXPECTED
    if prepare:
        scc.pp.prepare(adata)
    return adata


@pytest.fixture(scope="module")
def _planted_base():
    return _planted()


@pytest.fixture
def planted(_planted_base):
    return _planted_base.copy()


def _log_records(caplog, func):
    logger = logging.getLogger("sccluster")  # does not propagate to the root logger caplog listens on
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO", logger="sccluster"):
            return func()
    finally:
        logger.removeHandler(caplog.handler)


def _snapshot(adata) -> dict:
    return {
        "X": adata.X.copy(), "obs": adata.obs.copy(), "var": adata.var.copy(), "uns": sorted(adata.uns),
        "obsm": sorted(adata.obsm), "layers": {k: v.copy() for k, v in adata.layers.items()},
    }  # fmt: skip


def _assert_unchanged_but(adata, before, *, obs=(), uns=()) -> None:
    assert (adata.X != before["X"]).nnz == 0
    pd.testing.assert_frame_equal(adata.var, before["var"])
    assert sorted(set(adata.obs.columns) - set(obs)) == sorted(before["obs"].columns)
    pd.testing.assert_frame_equal(adata.obs[list(before["obs"].columns)], before["obs"])
    assert sorted(set(adata.uns) - set(uns)) == before["uns"]
    assert sorted(adata.obsm) == before["obsm"]
    for name, layer in before["layers"].items():
        assert (adata.layers[name] != layer).nnz == 0


# --------------------------------------------------------------------------- annotate
def test_annotate_names_each_planted_cluster(planted, caplog):
    before = _snapshot(planted)
    table = _log_records(caplog, lambda: scc.tl.annotate(planted, SETS, groupby="cluster", key_added="ann"))
    assert list(table.columns) == TABLE_COLUMNS
    assert dict(zip(table["cluster"], table["cell_type"], strict=True)) == EXPECTED
    named = table[table["cell_type"] != "unassigned"]
    assert (
        (named["pval_adj"] <= 0.05).all() and (named["score"] > 0.5).all() and (named["margin"] > 0.5).all()
    )
    assert (named["cell_type"] == named["best_match"]).all()
    assert table.loc[table["cluster"] == "4", "pval_adj"].item() > 0.05
    # the per-cluster table is stored, the per-cell names and scores written, nothing else changed
    pd.testing.assert_frame_equal(planted.uns["ann"], table)
    _assert_unchanged_but(planted, before, obs=("ann", "ann_score"), uns=("ann", "ann_details"))
    cells = planted.obs["ann"].astype(str).to_numpy()
    np.testing.assert_array_equal(cells, planted.obs["cluster"].map(EXPECTED).astype(str).to_numpy())
    assert list(planted.obs["ann"].cat.categories) == [*list(SETS), "unassigned"]
    # each cell's score averages to its cluster's score; unassigned cells have none
    mean_score = planted.obs.groupby("cluster", observed=True)["ann_score"].mean()
    for _, row in named.iterrows():
        assert mean_score[row["cluster"]] == pytest.approx(row["score"], rel=1e-4)
    assert planted.obs.loc[planted.obs["cluster"] == "4", "ann_score"].isna().all()
    details = planted.uns["ann_details"]
    assert details["params"]["groupby"] == "cluster" and details["params"]["n_background"] >= 1000
    assert len(details["scores"]) == N_PLANTED * len(SETS)
    # markers found are listed strongest first; the missing marker is reported in the table and the log
    alpha = table.set_index("cluster").loc["0"]
    assert alpha["markers_missing"] == "Notagene1" and alpha["n_found"] == 6 and alpha["n_markers"] == 7
    assert set(alpha["markers_found"].split(", ")) == set(SETS["alpha cell"][:6])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Notagene1" in m and "1 of 25 marker genes" in m for m in warned)


def test_annotate_result_survives_write_h5ad(planted, tmp_path):
    table = scc.tl.annotate(planted, SETS, groupby="cluster")
    planted.write_h5ad(tmp_path / "a.h5ad")
    back = scc.read(tmp_path / "a.h5ad")
    pd.testing.assert_frame_equal(back.uns["cell_type"], table, check_index_type=False)
    assert back.obs["cell_type"].astype(str).tolist() == planted.obs["cell_type"].astype(str).tolist()
    assert isinstance(back.uns["cell_type_details"]["scores"], pd.DataFrame)


def test_annotate_is_reproducible_and_uses_its_own_generator(planted):
    state = np.random.get_state()[1][:5].copy()
    first = scc.tl.annotate(planted, SETS, groupby="cluster", random_state=7)
    again = scc.tl.annotate(planted, SETS, groupby="cluster", random_state=7)
    other = scc.tl.annotate(planted, SETS, groupby="cluster", random_state=8)
    pd.testing.assert_frame_equal(first, again)
    assert first["cell_type"].tolist() == other["cell_type"].tolist()
    np.testing.assert_allclose(first["score"], other["score"])  # the score is exact; only p and z are sampled
    np.testing.assert_array_equal(np.random.get_state()[1][:5], state)


def _write_formats(tmp_path) -> dict:
    files = {}
    rows = [(t, g) for t, genes in SETS.items() for g in genes]
    files["csv"] = tmp_path / "m.csv"
    files["csv"].write_text("# planted markers\ncell_type,gene\n" + "".join(f"{t},{g}\n" for t, g in rows))
    files["csv_no_header"] = tmp_path / "m2.csv"
    files["csv_no_header"].write_text("".join(f"{t},{g}\n" for t, g in rows))
    files["tsv"] = tmp_path / "m.tsv"
    files["tsv"].write_text("gene\tcell_type\n" + "".join(f"{g}\t{t}\n" for t, g in rows))
    files["gmt"] = tmp_path / "m.gmt"
    files["gmt"].write_text("".join(f"{t}\tplanted\t" + "\t".join(g) + "\n" for t, g in SETS.items()))
    files["json"] = tmp_path / "m.json"
    files["json"].write_text(json.dumps(SETS))
    files["json_nested"] = tmp_path / "m3.json"
    files["json_nested"].write_text(
        json.dumps(
            {
                "references": ["x"],
                "cell_types": {t: {"cell_ontology_id": "CL:0", "markers": g} for t, g in SETS.items()},
            }
        )
    )
    return files


def test_marker_formats_give_the_same_result(planted, tmp_path):
    reference = scc.tl.annotate(planted, SETS, groupby="cluster")
    for kind, path in _write_formats(tmp_path).items():
        assert scc.tl.read_markers(path) == SETS, kind
        table = scc.tl.annotate(planted, str(path), groupby="cluster")
        pd.testing.assert_frame_equal(table, reference, obj=kind)


def test_case_insensitive_matching(planted):
    upper = {t: [g.upper() for g in genes] for t, genes in SETS.items()}  # human-style symbols
    with pytest.raises(InputError, match=r"24 match when case is ignored: pass ignore_case=True") as err:
        scc.tl.annotate(planted, upper, groupby="cluster")
    assert "\n" not in str(err.value) and "the markers dict" in str(err.value)
    table = scc.tl.annotate(planted, upper, groupby="cluster", ignore_case=True)
    assert dict(zip(table["cluster"], table["cell_type"], strict=True)) == EXPECTED
    assert table.loc[0, "markers_missing"] == "NOTAGENE1"


def test_no_marker_in_the_data_is_a_one_line_error(planted, tmp_path):
    path = tmp_path / "human.csv"
    path.write_text("cell_type,gene\nB cell,MS4A1\nB cell,CD79A\n")
    before = _snapshot(planted)
    with pytest.raises(InputError) as err:
        scc.tl.annotate(planted, path, groupby="cluster")
    text = str(err.value)
    assert "\n" not in text and str(path) in text and "none of the 2 marker genes" in text
    assert "gene symbols" in text
    _assert_unchanged_but(planted, before)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"groupby": "nope"}, "no column 'nope'"),
        ({"key_added": "cluster"}, "would overwrite the clusters"),
        ({"alpha": 0}, "alpha must be a number in"),
        ({"min_markers": 0}, "min_markers must be an integer"),
        ({"n_background": 10}, "n_background must be an integer >= 100"),
        ({"ignore_case": "yes"}, "ignore_case must be True or False"),
        ({"markers": "no_such_set"}, "neither a file nor a shipped marker set"),
        ({"markers": 3}, "markers must be a dict"),
        ({"markers": {}}, "holds no marker sets"),
        ({"markers": {"unassigned": ["Mk0g0"]}}, "'unassigned' is reserved"),
        ({"markers": {"x": []}}, "has no marker genes"),
        ({"markers": {"x": [1, 2]}}, "must be a list of gene names"),
        ({"min_markers": 7}, "has 7 marker gene"),
    ],
)
def test_bad_arguments(planted, kwargs, message):
    kwargs = {"markers": SETS, "groupby": "cluster", **kwargs}
    with pytest.raises(InputError, match=message) as err:
        scc.tl.annotate(planted, kwargs.pop("markers"), **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.csv", "cell_type,gene\nB cell\n", "line 2 does not have a cell type and a gene"),
        ("bad.gmt", "B cell\tMS4A1\n", "line 1 is not a GMT line"),
        ("bad.json", "{not json", "is not valid JSON"),
        ("list.json", "[1, 2]", "must hold a JSON object"),
        ("bad.xlsx", "x", "unknown suffix '.xlsx'"),
    ],
)
def test_bad_marker_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        scc.tl.read_markers(path)


def test_raw_counts_are_refused_with_the_remedy():
    raw = _planted(prepare=False)
    for call in (
        lambda: scc.tl.annotate(raw, SETS, groupby="cluster"),
        lambda: scc.tl.markers(raw, groupby="cluster"),
    ):
        with pytest.raises(InputError, match=r"raw counts .* run scc.pp.prepare"):
            call()
    assert "cell_type" not in raw.obs and not raw.uns


def test_sparse_and_dense_x_agree(planted):
    dense = planted.copy()
    dense.X = planted.X.toarray()
    a = scc.tl.annotate(planted, SETS, groupby="cluster")
    b = scc.tl.annotate(dense, SETS, groupby="cluster")
    pd.testing.assert_frame_equal(a, b)


def test_bh_adjust_matches_scipy():
    from scipy.stats import false_discovery_control

    p = np.random.default_rng(0).uniform(size=(6, 5)) ** 3
    np.testing.assert_allclose(bh_adjust(p), false_discovery_control(p.ravel()).reshape(p.shape))
    q = p.copy()
    q[0, 0] = np.nan  # untested pairs are not counted
    expected = false_discovery_control(p.ravel()[1:])
    np.testing.assert_allclose(bh_adjust(q).ravel()[1:], expected)
    assert np.isnan(bh_adjust(q)[0, 0])


# --------------------------------------------------------------------------- markers
def test_markers_tidy_table_names_each_planted_clusters_genes(planted, tmp_path):
    before = _snapshot(planted)
    table = scc.tl.markers(planted, groupby="cluster", n_genes=5, max_cells_per_group=100)
    assert list(table.columns) == [
        "group",
        "rank",
        "gene",
        "score",
        "logfoldchange",
        "pval",
        "pval_adj",
        "frac_in",
        "frac_out",
    ]
    assert len(table) == 5 * N_PLANTED and list(table["group"].cat.categories) == [
        str(k) for k in range(N_PLANTED)
    ]
    for k in range(N_PLANTED):
        top = table[(table["group"] == str(k)) & (table["rank"] == 1)].iloc[0]
        assert top["gene"].startswith(f"Mk{k}g"), top["gene"]
        assert top["logfoldchange"] > 0.5 and top["pval_adj"] < 1e-3
    assert table[["frac_in", "frac_out"]].stack().between(0, 1).all()
    _assert_unchanged_but(planted, before, uns=("cluster_markers",))
    pd.testing.assert_frame_equal(planted.uns["cluster_markers"], table)
    planted.write_h5ad(tmp_path / "m.h5ad")
    back = scc.read(tmp_path / "m.h5ad").uns["cluster_markers"]
    assert back["gene"].tolist() == table["gene"].tolist()


def test_markers_subsample_is_seeded_and_bounded(planted):
    a = scc.tl.markers(planted, groupby="cluster", n_genes=3, max_cells_per_group=50, key_added="a")
    b = scc.tl.markers(planted, groupby="cluster", n_genes=3, max_cells_per_group=50, key_added="b")
    pd.testing.assert_frame_equal(a, b)
    full = scc.tl.markers(planted, groupby="cluster", n_genes=3, key_added="c")  # 80-240 cells per group: all
    assert not np.allclose(a["score"], full["score"])  # fewer cells tested: smaller statistics


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"groupby": "nope"}, "no column 'nope'"),
        ({"n_genes": 0}, "n_genes"),
        ({"method": "logreg"}, "method must be"),
        ({"max_cells_per_group": 1}, "max_cells_per_group"),
    ],
)
def test_markers_bad_arguments(planted, kwargs, message):
    with pytest.raises(InputError, match=message):
        scc.tl.markers(planted, **{"groupby": "cluster", **kwargs})


# --------------------------------------------------------------------------- shipped sets
def test_shipped_marker_sets_load_with_their_references():
    sets = scc.tl.marker_sets()
    assert sets["name"].tolist() == ["human_pancreas", "human_pbmc", "mouse_pancreas", "mouse_pbmc"]
    for _, row in sets.iterrows():
        doc = json.loads(Path(row["path"]).read_text(encoding="utf-8"))
        assert doc["name"] == row["name"] and doc["species"] in row["name"]
        assert len(doc["references"]) >= 2 and all("(20" in r or "Satija" in r for r in doc["references"])
        markers = scc.tl.read_markers(row["name"])
        assert len(markers) == row["n_types"] >= 9
        for cell_type, genes in markers.items():
            assert doc["cell_types"][cell_type]["cell_ontology_id"].startswith("CL:")
            assert len(genes) >= 3
            if doc["species"] == "mouse":  # mouse capitalisation: Ins1, Cd3e, Nkx6-1
                assert all(g[0].isupper() and g[1:] != g[1:].upper() for g in genes if len(g) > 2), genes
            else:
                assert all(g == g.upper() for g in genes), genes
    human = dict(zip(sets["name"], sets["cell_types"], strict=True))
    assert "B cell" in human["human_pbmc"] and "pancreatic A cell" in human["human_pancreas"]


def test_shipped_sets_are_in_the_package_data():
    from sccluster.tl._marker_sets import MARKER_DIR

    assert MARKER_DIR.is_dir() and MARKER_DIR.parts[-4:] == ("sccluster", "tl", "_data", "markers")


def test_shipped_pbmc_set_on_pbmc68k_reduced():
    path = scc.settings.datasetdir / "pbmc68k_reduced.h5ad"
    if not path.exists():
        pytest.skip(f"{path} not available")
    adata = scc.read(path)
    scc.pp.prepare(adata)
    # louvain_scanpy is a clustering carried over with the file (not the labels, which are never read here)
    table = scc.tl.annotate(adata, "human_pbmc", groupby="louvain_scanpy", key_added="annotation")
    x = np.asarray(adata[:, "MS4A1"].X.toarray()).ravel()
    b_cluster = adata.obs.assign(x=x).groupby("louvain_scanpy", observed=True)["x"].mean().idxmax()
    row = table.set_index("cluster").loc[str(b_cluster)]
    assert row["cell_type"] == "B cell" and row["pval_adj"] <= 0.05
    assert set(table["cell_type"]) <= {*scc.tl.read_markers("human_pbmc"), "unassigned"}
    mouse = scc.tl.annotate(adata, "mouse_pbmc", groupby="louvain_scanpy", key_added="m", ignore_case=True)
    assert len(mouse) == len(table)


# --------------------------------------------------------------------------- report
def test_report_shows_the_annotation_table(planted, tmp_path):
    scc.tl.annotate(planted, SETS, groupby="cluster", key_added="ann")
    out = scc.pl.report(planted, tmp_path / "r.html", key="cluster")
    text = out.read_text(encoding="utf-8")
    assert ">Annotation</h" in text and "uns[&#x27;ann&#x27;]" in text
    for name in ("alpha cell", "delta cell", "unassigned", "runner_up", "markers_found"):
        assert name in text


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


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def planted_file(planted, tmp_path):
    planted.X = sp.csr_matrix(planted.X)
    path = tmp_path / "in.h5ad"
    planted.write_h5ad(path)
    return path


def test_cli_markers(planted_file, tmp_path):
    digest = _md5(planted_file)
    out = tmp_path / "markers.csv"
    proc = _cli("markers", str(planted_file), "--groupby", "cluster", "--n-genes", "4", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[1].split() == ["group", "cells", "genes"]
    for k in range(N_PLANTED):
        row = next(line.split() for line in lines[2:] if line.split()[0] == str(k))
        assert len(row) == 2 + 4 and row[2].startswith(f"Mk{k}g")
    table = pd.read_csv(out)
    assert len(table) == 4 * N_PLANTED and "frac_in" in table.columns
    assert _md5(planted_file) == digest


def test_cli_annotate(planted_file, tmp_path):
    digest = _md5(planted_file)
    markers = _write_formats(tmp_path)["gmt"]
    out = tmp_path / "out.h5ad"
    proc = _cli(
        "annotate",
        str(planted_file),
        "-o",
        str(out),
        "--markers",
        str(markers),
        "--groupby",
        "cluster",
        "--key-added",
        "ann",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["cluster", "cells", "type"] and "runner-up" in lines[0]
    for k, name in EXPECTED.items():
        assert any(line.split()[0] == k and name in line for line in lines[1:]), (k, proc.stdout)
    assert "named     4 of 5 clusters" in proc.stdout and "1 marker genes not in the data" in proc.stdout
    assert "Notagene1" in proc.stderr  # the missing marker, as a logged warning
    result = scc.read(out)
    assert result.obs["ann"].astype(str).tolist() == result.obs["cluster"].map(EXPECTED).astype(str).tolist()
    assert "ann" in result.uns and "ann_score" in result.obs
    assert _md5(planted_file) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["in.h5ad", "out.h5ad", *[p.name for p in _write_formats(tmp_path).values()]]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["annotate", "{src}", "-o", "{tmp}/out.h5ad", "--markers", "human_pbmc", "--groupby", "cluster"],
            "error: none of the 68 marker genes of shipped set 'human_pbmc'",
        ),
        (
            ["annotate", "{src}", "-o", "{tmp}/out.h5ad", "--markers", "nope.gmt", "--groupby", "cluster"],
            "error: markers 'nope.gmt' is neither a file nor a shipped marker set",
        ),
        (
            ["annotate", "{src}", "-o", "{tmp}/out.h5ad", "--markers", "human_pbmc"],
            "error: --groupby 'sccluster' is not a column of obs",
        ),
        (["annotate", "{src}", "-o", "{tmp}/out.csv", "--markers", "human_pbmc"], "must end in .h5ad"),
        (["annotate", "{src}", "-o", "{src}", "--markers", "human_pbmc"], "is the input file"),
        (
            ["markers", "{src}", "--groupby", "nope", "-o", "{tmp}/m.csv"],
            "error: --groupby 'nope' is not a column",
        ),
        (["markers", "{src}", "--groupby", "cluster", "-o", "{tmp}/m.txt"], "must end in .csv"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(planted_file, tmp_path, args, message):
    digest = _md5(planted_file)
    proc = _cli(*[a.format(src=planted_file, tmp=tmp_path) for a in args])
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["in.h5ad"]
    assert _md5(planted_file) == digest


@pytest.mark.parametrize("command", ["markers", "annotate"])
def test_cli_help(command, capsys):
    from sccluster import cli

    assert cli.main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "--groupby" in text
    if command == "annotate":
        assert "--markers" in text and "--ignore-case" in text and "human_pbmc" in text
