"""The ``sccluster`` command line, end to end on the bundled demo (subprocesses) and in-process."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from sccluster import cli


@pytest.fixture(autouse=True)
def _restore_verbosity():
    from sccluster import settings

    before = settings.verbosity
    yield
    settings.verbosity = before


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sccluster", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=dict(os.environ),
        check=False,
    )


def _read(path):
    import anndata as ad

    return ad.read_h5ad(path)


@pytest.fixture(scope="module")
def _runs(tmp_path_factory):
    """Two end-to-end runs on the demo, started together (each JIT-compiles numba code once).

    ``demo``: ``sccluster demo --method kmeans`` at the default verbosity (k-means is fast; the demo also
    runs leiden for comparison). ``quiet``: ``sccluster -q cluster DEMO --labels-csv``, with the same
    method and seed.
    """
    from sccluster.datasets import demo_path

    folder = tmp_path_factory.mktemp("cli")
    demo_out, out, csv = folder / "demo.h5ad", folder / "out.h5ad", folder / "labels.csv"
    argvs = {
        "demo": ["demo", "-o", str(demo_out), "--method", "kmeans"],
        "quiet": [
            "-q",
            "cluster",
            str(demo_path()),
            "-o",
            str(out),
            "--method",
            "kmeans",
            "--seed",
            "0",
            "--label-key",
            "cell_type",
            "--labels-csv",
            str(csv),
        ],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "sccluster", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for name, argv in argvs.items()
    }
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=900)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        assert proc.returncode == 0, stderr
    return {"demo": (results["demo"], demo_out), "quiet": (results["quiet"], out, csv)}


@pytest.fixture
def demo_run(_runs):
    return _runs["demo"]


@pytest.fixture
def quiet_run(_runs):
    return _runs["quiet"]


def test_demo_prints_summary_and_writes_clusters(demo_run):
    result, out = demo_run
    text = result.stdout
    for word in ("cells", "clusters", "ARI", "NMI", "ACC", "time"):
        assert word in text
    ari = float(re.search(r"ARI\s+(-?[0-9.]+)", text).group(1))
    assert 0.2 < ari <= 1.0  # k-means on the demo is far better than chance
    # the fair baseline on the same cells, in the same summary
    other = re.search(
        r"compare\s+leiden \(resolution chosen by stability\) on the same cells: ARI (0\.\d+), "
        r"NMI 0\.\d+, (\d+) clusters, [0-9.]+ s",
        text,
    )
    assert other and 0.2 < float(other.group(1)) <= 1.0, text
    adata = _read(out)
    assert "sccluster" in adata.obs
    assert adata.obs["sccluster"].nunique() == int(re.search(r"clusters\s+(\d+) found", text).group(1))
    scores = adata.uns["sccluster"]["scores"]
    assert scores["ari"] == pytest.approx(ari, abs=1e-3)
    assert scores["label_key"] == "cell_type"


def test_cluster_writes_csv_one_row_per_cell(quiet_run):
    import pandas as pd

    _, out, csv = quiet_run
    adata = _read(out)
    table = pd.read_csv(csv, dtype={"cluster": str})
    assert len(table) == adata.n_obs
    assert list(table["cell"]) == list(adata.obs_names)
    assert list(table["cluster"]) == list(adata.obs["sccluster"].astype(str))


def test_quiet_prints_nothing_on_stderr(quiet_run):
    result, _, _ = quiet_run
    assert result.stderr.strip() == ""
    assert "clusters" in result.stdout  # the summary is the result: still printed


def test_same_seed_gives_same_labels(demo_run, quiet_run):
    first = _read(demo_run[1]).obs["sccluster"].astype(str).to_numpy()
    second = _read(quiet_run[1]).obs["sccluster"].astype(str).to_numpy()
    assert (first == second).all()


def test_evaluate_matches_stored_scores(quiet_run):
    _, out, _ = quiet_run
    result = _cli("evaluate", str(out), "--truth", "cell_type", "--pred", "sccluster")
    assert result.returncode == 0, result.stderr
    ari = float(re.search(r"ARI\s+(-?[0-9.]+)", result.stdout).group(1))
    assert ari == pytest.approx(_read(out).uns["sccluster"]["scores"]["ari"], abs=1e-3)
    assert re.search(r"clusters\s+\d+ found .* / \d+ true", result.stdout)


def test_evaluate_unknown_key_is_one_line_error(quiet_run):
    _, out, _ = quiet_run
    result = _cli("evaluate", str(out), "--truth", "nope", "--pred", "sccluster")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "cell_type" in result.stderr  # lists what is available


def test_default_method_is_the_same_everywhere():
    import inspect

    import sccluster as scc
    from sccluster.models import DEFAULT_METHOD

    assert DEFAULT_METHOD == "siamese"
    assert inspect.signature(scc.tl.cluster).parameters["method"].default == DEFAULT_METHOD
    parser = cli.build_parser()
    assert parser.parse_args(["cluster", "in.h5ad", "-o", "out.h5ad"]).method == DEFAULT_METHOD
    assert parser.parse_args(["demo"]).method == DEFAULT_METHOD == cli.DEMO_METHOD


@pytest.mark.slow
def test_demo_runs_the_default_model_beside_the_fair_baseline(tmp_path):
    """`sccluster demo` as `make demo` runs it: the default method with its defaults, then leiden on the same cells."""
    from sccluster.models import DEFAULT_METHOD

    result = _cli("demo", "-o", str(tmp_path / "demo.h5ad"))
    assert result.returncode == 0, result.stderr
    assert re.search(rf"method\s+{DEFAULT_METHOD} \(seed 0\)", result.stdout), result.stdout
    assert float(re.search(r"ARI\s+(0\.\d+)", result.stdout).group(1)) > 0.5
    assert "compare   leiden (resolution chosen by stability) on the same cells: ARI" in result.stdout


@pytest.mark.parametrize("command", [[], ["cluster"], ["demo"], ["evaluate"], ["datasets"], ["report"]])
def test_help(command, capsys):
    assert cli.main([*command, "--help"]) == 0
    assert "usage: sccluster" in capsys.readouterr().out


def test_version():
    from sccluster import __version__

    result = _cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_datasets_lists_benchmarks(capsys):
    assert cli.main(["-q", "datasets"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out
    assert "read from" in out


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("-2", -2),
        ("1e-3", 1e-3),
        ("0.5", 0.5),
        ("true", True),
        ("False", False),
        ("none", None),
        ("cosine", "cosine"),
    ],
)
def test_param_values(text, value):
    parsed = cli.parse_params([f"x={text}"])["x"]
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("item", ["novalue", "=3", "n_clusters=3", "random_state=1"])
def test_bad_params(item):
    from sccluster import InputError

    with pytest.raises(InputError):
        cli.parse_params([item])


@pytest.fixture
def failing_cluster(monkeypatch, tmp_path):
    """Make ``tl.cluster`` raise a given exception; return the argv of a cluster run."""
    from sccluster import tl
    from sccluster.datasets import demo_path

    def arm(exc):
        def boom(*args, **kwargs):
            raise exc

        monkeypatch.setattr(tl, "cluster", boom)
        return ["cluster", str(demo_path()), "-o", str(tmp_path / "out.h5ad")]

    return arm


def test_internal_error_is_one_line(failing_cluster, capsys, tmp_path):
    argv = failing_cluster(RuntimeError("boom"))
    assert cli.main(["-q", *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: internal error (RuntimeError: boom); rerun with -v for the traceback"]
    assert not (tmp_path / "out.h5ad").exists()


def test_verbose_shows_traceback(failing_cluster, capsys):
    argv = failing_cluster(RuntimeError("boom"))
    assert cli.main(["-v", *argv]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_training_error_exits_1(failing_cluster, capsys):
    from sccluster import TrainingError

    argv = failing_cluster(TrainingError("loss diverged at epoch 3"))
    assert cli.main(["-q", *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss diverged" in err[0] and err[0].startswith("error: ")


_SMALL_MODEL_PARAMS = {
    "bgformer": ["pretrain_steps=40", "cluster_steps=20", "d_model=32", "n_anchors=8", "batch_size=128"],
    "siamese": ["pretrain_steps=40", "cluster_steps=20", "n_hidden=32", "n_pcs=10", "batch_size=128"],
}


@pytest.mark.parametrize("method", ["bgformer", "siamese"])
def test_cli_runs_deep_models(method, tmp_path):
    """`sccluster cluster --method bgformer|siamese` end to end on a small planted-cluster file."""
    import anndata as ad

    from sccluster.datasets import synthetic

    src, out, csv = tmp_path / "in.h5ad", tmp_path / "out.h5ad", tmp_path / "labels.csv"
    synthetic(n_cells=300, n_genes=100, n_clusters=3, random_state=1).write_h5ad(src)
    params = [arg for p in _SMALL_MODEL_PARAMS[method] for arg in ("--param", p)]
    proc = _cli(
        "cluster",
        str(src),
        "-o",
        str(out),
        "--method",
        method,
        "--n-clusters",
        "3",
        "--seed",
        "0",
        "--label-key",
        "cell_type",
        "--labels-csv",
        str(csv),
        *params,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert re.search(r"ARI\s+0\.9\d\d|ARI\s+1\.000", proc.stdout), proc.stdout
    result = ad.read_h5ad(out)
    assert result.uns["sccluster"]["method"] == method
    assert result.obs["sccluster"].nunique() == 3
    assert result.obsm["X_sccluster"].shape[0] == 300
    assert result.obs["sccluster_confidence"].between(0, 1).all()
    assert len(csv.read_text().strip().splitlines()) == 301  # header + one row per cell


def test_cli_consensus_over_seeds(tmp_path):
    """`--n-seeds 3` fits three seeds and writes their consensus with each cell's agreement."""
    import anndata as ad

    from sccluster.datasets import synthetic

    src, out = tmp_path / "in.h5ad", tmp_path / "out.h5ad"
    synthetic(n_cells=300, n_genes=100, n_clusters=3, random_state=1).write_h5ad(src)
    proc = _cli(
        "cluster",
        str(src),
        "-o",
        str(out),
        "--method",
        "kmeans",
        "--n-clusters",
        "3",
        "--n-seeds",
        "3",
        "--label-key",
        "cell_type",
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"seeds\s+3 \(consensus; mean ARI between seeds 1\.000", proc.stdout), proc.stdout
    result = ad.read_h5ad(out)
    assert (result.obs["sccluster_agreement"] == 1.0).all()
    assert list(result.uns["sccluster"]["stability"]["seeds"]) == [0, 1, 2]
    bad = _cli("cluster", str(src), "-o", str(tmp_path / "b.h5ad"), "--n-seeds", "101")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--n-seeds" in bad.stderr
    assert not (tmp_path / "b.h5ad").exists()
