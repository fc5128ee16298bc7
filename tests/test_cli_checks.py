"""Checks of the command line that need no data run before any file is read, and every message says what to do.

The hyperparameter cases run ``sccluster cluster`` on a file that does not exist: the error about the
parameter, not "file not found", shows that nothing was read first.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sccluster import cli


@pytest.fixture(autouse=True)
def _restore_verbosity():
    from sccluster import settings

    before = settings.verbosity
    yield
    settings.verbosity = before


def _error(capsys, argv: list[str]) -> str:
    code = cli.main(["-q", *argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


_BEFORE_READING = {  # extra options -> texts of the error line (what is wrong, what to do)
    "lr_text": (["--param", "lr=abc"], ["--param lr=abc", "lr must be a number > 0", "leave the option out",
                                         "lr defaults to"]),
    "steps_float": (["--param", "pretrain_steps=2.5"], ["pretrain_steps must be an integer >= 1"]),
    "batch_size_zero": (["--method", "bgformer", "--param", "batch_size=0"], ["batch_size must be an integer >= 1", "got 0"]),
    "heads": (["--method", "bgformer", "--param", "d_model=30", "--param", "n_heads=4"], ["divisible by n_heads=4", "change the value"]),
    "flag": (["--method", "bgformer", "--param", "early_stopping=3"], ["early_stopping must be True or False"]),
    "unknown": (["--param", "lrr=0.1"], ["unknown --param lrr", "did you mean lr", "use one of its parameters"]),
    "type_without_hook": (["--method", "kmeans", "--param", "n_init=abc"], ["n_init must be an integer",
                                                                            "n_init defaults to 10"]),
    "no_equals": (["--param", "lr"], ["NAME=VALUE"]),
    "reserved": (["--param", "n_clusters=3"], ["use --n-clusters instead"]),
    "empty_key": (["--key-added", ""], ["--key-added must not be empty", "for example --key-added sccluster"]),
    "slash_key": (["--key-added", "a/b"], ["contains '/'", "choose a name without '/'"]),
    "too_many_for_max_fit_cells": (["--method", "bgformer", "--n-clusters", "50", "--param", "max_fit_cells=20"],
                                   ["raise max_fit_cells or ask for fewer clusters"]),
    "leiden_resolution": (["--method", "leiden", "--param", "resolution=-1"],
                          ["resolution must be a positive number or 'auto'", "resolution defaults to 'auto'"]),
    "leiden_neighbors": (["--method", "leiden", "--param", "n_neighbors=1"], ["n_neighbors must be an integer >= 2"]),
    "kmeans_value": (["--method", "kmeans", "--param", "n_init=0"], ["n_init must be an integer >= 1"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(_BEFORE_READING))
def test_checked_before_reading(case, capsys, tmp_path):
    extra, texts = _BEFORE_READING[case]
    line = _error(
        capsys, ["cluster", str(tmp_path / "missing.h5ad"), "-o", str(tmp_path / "out.h5ad"), *extra]
    )
    assert "not found" not in line
    for text in texts:
        assert text in line, line


def test_cuda_without_cuda_is_refused_before_reading(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = _error(capsys, ["cluster", str(tmp_path / "missing.h5ad"), "-o", str(tmp_path / "o.h5ad"),
                           "--param", "device=cuda"])  # fmt: skip
    assert "CUDA is not available" in line and "device='cpu'" in line


def test_transfer_params_checked_before_reading(capsys, tmp_path):
    missing = str(tmp_path / "missing.h5ad")
    base = ["transfer", missing, missing, "-o", str(tmp_path / "o.h5ad"), "--label-key", "cell_type"]
    assert "pretrain_steps must be an integer" in _error(capsys, [*base, "--param", "pretrain_steps=2.5"])
    assert "did you mean n_pcs" in _error(capsys, [*base, "--method", "pca", "--param", "n_pc=5"])
    assert "--key-added must not be empty" in _error(capsys, [*base, "--key-added", ""])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 40-cell file with 10 cells without counts, and a genes x cells table of a 60-cell file."""
    import scipy.sparse as sp

    from sccluster.datasets import synthetic

    folder = tmp_path_factory.mktemp("cli_checks")
    adata = synthetic(n_cells=40, n_genes=30, n_clusters=2, n_markers=5, random_state=1)
    dense = adata.X.toarray()
    dense[:10] = 0
    adata.X = sp.csr_matrix(dense)
    adata.write_h5ad(folder / "empty_cells.h5ad")
    cells = synthetic(n_cells=60, n_genes=50, n_clusters=3, n_markers=5, random_state=0)
    table = pd.DataFrame(cells.X.toarray().T.astype(int), index=[f"gene_{j}" for j in range(cells.n_vars)],
                         columns=[f"cell_{i}" for i in range(cells.n_obs)])  # fmt: skip
    table.to_csv(folder / "genes_by_cells.csv")
    return folder


def test_more_clusters_than_cells_left_after_qc(files, capsys, tmp_path):
    line = _error(capsys, ["cluster", str(files / "empty_cells.h5ad"), "-o", str(tmp_path / "o.h5ad"),
                           "--method", "kmeans", "--n-clusters", "35"])  # fmt: skip
    assert "35 is more than the 30 cells left after quality control" in line
    assert "ask for at most 30 clusters" in line
    assert not (tmp_path / "o.h5ad").exists()


def test_missing_label_key_says_what_to_do(files, capsys, tmp_path):
    line = _error(capsys, ["cluster", str(files / "empty_cells.h5ad"), "-o", str(tmp_path / "o.h5ad"),
                           "--method", "kmeans", "--label-key", "nope"])  # fmt: skip
    assert "cell_type" in line and "choose one of them" in line


def test_transpose_reads_genes_by_cells(files, capsys, tmp_path):
    import anndata as ad

    out = tmp_path / "o.h5ad"
    code = cli.main(["-q", "cluster", str(files / "genes_by_cells.csv"), "-o", str(out), "--method", "kmeans",
                     "--n-clusters", "3", "--transpose"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = ad.read_h5ad(out)
    assert result.n_obs == 60 and result.obs_names[0] == "cell_0"


def test_transpose_of_an_h5ad_says_what_to_do(files, capsys, tmp_path):
    line = _error(capsys, ["cluster", str(files / "empty_cells.h5ad"), "-o", str(tmp_path / "o.h5ad"),
                           "--transpose"])  # fmt: skip
    assert "only for csv/tsv/txt tables" in line and "leave out" in line


def test_orientation_warning_prints_once_and_names_the_option(files, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sccluster", "cluster", str(files / "genes_by_cells.csv"), "-o",
         str(tmp_path / "o.h5ad"), "--method", "kmeans", "--n-clusters", "3"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "genes x cells" in line]
    assert len(warned) == 1, proc.stderr
    assert "--transpose" in warned[0]


def test_transfer_transpose_and_label_key(files, capsys, tmp_path):
    import anndata as ad

    from sccluster.datasets import synthetic

    ref = synthetic(n_cells=60, n_genes=50, n_clusters=3, n_markers=5, random_state=0)
    ref.write_h5ad(tmp_path / "ref.h5ad")
    line = _error(capsys, ["transfer", str(tmp_path / "ref.h5ad"), str(files / "genes_by_cells.csv"), "-o",
                           str(tmp_path / "o.h5ad"), "--method", "pca", "--label-key", "nope"])  # fmt: skip
    assert "--label-key 'nope'" in line and "cell_type" in line and "choose one of them" in line
    out = tmp_path / "t.h5ad"
    code = cli.main(["-q", "transfer", str(tmp_path / "ref.h5ad"), str(files / "genes_by_cells.csv"), "-o",
                     str(out), "--method", "pca", "--label-key", "cell_type", "--transpose",
                     "--param", "n_pcs=10"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = ad.read_h5ad(out)
    types = [*ref.obs["cell_type"].astype(str).unique(), "unknown"]
    assert result.n_obs == 60 and np.isin(result.obs["transferred_label"].astype(str), types).all()
