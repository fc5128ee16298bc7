"""Bad input through the real command line: one ``error:`` line, exit 2, no traceback, nothing written.

Every case runs ``python -m sccluster cluster ...`` in a subprocess on small files built in tmp_path,
and checks that the input file is unchanged (md5) and that no output file (or temporary part file)
appears.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp


def _md5(path: Path) -> str | None:
    return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else None


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # warnings must not turn into extra lines
    return subprocess.run(
        [sys.executable, "-m", "sccluster", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


@pytest.fixture(autouse=True)
def _restore_verbosity():
    from sccluster import settings

    before = settings.verbosity
    yield
    settings.verbosity = before


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A valid 60-cell file of raw counts, and the AnnData it was written from."""
    from sccluster.datasets import synthetic

    adata = synthetic(n_cells=60, n_genes=50, n_clusters=3, n_markers=5, random_state=0)
    path = tmp_path_factory.mktemp("good") / "good.h5ad"
    adata.write_h5ad(path)
    return adata, path


def _with_values(adata, change):
    bad = adata.copy()
    dense = bad.X.toarray()
    change(dense)
    bad.X = sp.csr_matrix(dense)
    return bad


def _bad_file(kind: str, small, folder: Path) -> Path:
    adata, _ = small
    if kind == "missing":
        return folder / "does_not_exist.h5ad"
    if kind == "unknown_format":
        path = folder / "cells.xyz"
        path.write_text("cell,gene_0\nc1,3\n")
        return path
    if kind == "corrupt":
        path = folder / "corrupt.h5ad"
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        return path
    if kind in ("index_out_of_range", "decreasing_indptr"):  # a valid HDF5 file, an inconsistent matrix
        import h5py

        path = folder / f"{kind}.h5ad"
        adata.write_h5ad(path)
        with h5py.File(path, "r+") as f:
            name = "indices" if kind == "index_out_of_range" else "indptr"
            values = f["X"][name][:]
            if kind == "index_out_of_range":
                values[7] = adata.n_vars + 5
            else:
                values[10] = values[12] + 3
            f["X"][name][:] = values
        return path
    changes = {
        "empty": None,
        "nan": lambda x: x.__setitem__((3, 4), np.nan),
        "inf": lambda x: x.__setitem__((5, 1), np.inf),
        "negative": lambda x: x.__setitem__((2, 2), -3.0),
        "non_integer": lambda x: x.__setitem__(slice(None), x * 0.5 + 0.25),
    }
    bad = adata[:0].copy() if kind == "empty" else _with_values(adata, changes[kind])
    path = folder / f"{kind}.h5ad"
    bad.write_h5ad(path)
    return path


def _assert_clean_failure(result, inp: Path, before: str | None, out: Path) -> None:
    err_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert len(err_lines) == 1, result.stderr
    assert err_lines[0].startswith("error: ")
    assert _md5(inp) == before
    if not out.is_dir():
        assert not out.exists()
    parts = list(out.parent.glob("*.part")) if out.parent.is_dir() else []
    assert parts == []


def _unwritable_dir(folder: Path) -> Path:
    locked = folder / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return locked / "result.h5ad"


_BAD_FILES = {  # kind -> text the error line must contain
    "missing": "not found",
    "unknown_format": "format",
    "corrupt": "corrupt.h5ad",
    "empty": "0 cells",
    "nan": "NaN",
    "inf": "Inf",
    "negative": "negative",
    "non_integer": "non-integer",
    "index_out_of_range": "damaged sparse matrix in X",
    "decreasing_indptr": "indptr decreases",
}
_BAD_OPTIONS = {  # name -> (options, text the error line must contain)
    "too_many_clusters": (["--n-clusters", "10000"], "10000"),
    "unknown_label_key": (["--label-key", "no_such_column"], "cell_type"),  # lists the obs columns
    "unknown_method": (["--method", "no_such_method"], "leiden"),  # lists the methods
    "unknown_param": (["--param", "no_such_param=3"], "no_such_param"),
    "negative_seed": (["--seed", "-1"], "0 to 4294967295"),
    "seed_too_large": (["--seed", "4294967296"], "0 to 4294967295"),
    "bad_param_value": (["--param", "batch_size=0"], "leave the option out"),  # checked before reading
    "empty_key_added": (["--key-added", ""], "--key-added must not be empty"),
}
_BAD_OUTPUTS = ["missing_folder", "is_directory", "same_as_input", "no_permission"]
_IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _setup(case: str, small, folder: Path) -> tuple[list[str], Path, Path, str]:
    """argv, input path, output path (must not appear) and the expected text of one case."""
    _, good = small
    out = folder / "out" / "result.h5ad"
    out.parent.mkdir()
    if case in _BAD_FILES:
        inp = _bad_file(case, small, folder)
        argv = ["cluster", str(inp), "-o", str(out), "--labels-csv", str(out.with_suffix(".csv"))]
        return argv, inp, out, _BAD_FILES[case]
    if case in _BAD_OPTIONS:
        extra, expected = _BAD_OPTIONS[case]
        return ["cluster", str(good), "-o", str(out), *extra], good, out, expected
    inp = folder / "input.h5ad"
    inp.write_bytes(good.read_bytes())
    target = {
        "missing_folder": lambda: folder / "no" / "such" / "folder" / "result.h5ad",
        "is_directory": lambda: out.parent,
        "same_as_input": lambda: inp,
        "no_permission": lambda: _unwritable_dir(folder),
    }[case]()
    return ["cluster", str(inp), "-o", str(target)], inp, out, "output"


_CASES = [*_BAD_FILES, *_BAD_OPTIONS, *_BAD_OUTPUTS]
_ROOT_SKIP = pytest.mark.skipif(_IS_ROOT, reason="root can write to read-only folders")


@pytest.fixture(scope="module")
def outcomes(small, tmp_path_factory):
    """Every case set up in its own folder, then run as subprocesses, a few at a time."""
    cases = [c for c in _CASES if not (c == "no_permission" and _IS_ROOT)]
    setups = {case: _setup(case, small, tmp_path_factory.mktemp(case)) for case in cases}
    before = {case: _md5(setup[1]) for case, setup in setups.items()}
    workers = max(2, min(4, os.cpu_count() or 2))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {case: pool.submit(_cli, *setup[0]) for case, setup in setups.items()}
        return {case: (fut.result(), *setups[case][1:], before[case]) for case, fut in futures.items()}


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=_ROOT_SKIP) if c == "no_permission" else c for c in _CASES]
)
def test_bad_input_gives_one_error_line(case, outcomes):
    result, inp, out, expected, before = outcomes[case]
    _assert_clean_failure(result, inp, before, out)
    assert not out.with_suffix(".csv").exists()
    assert expected.lower() in result.stderr.lower()


def test_usage_error_is_one_line(small, tmp_path):
    _, inp = small
    result = _cli("cluster", str(inp))  # -o missing
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "--output" in lines[0]


def test_failed_write_leaves_nothing(small, tmp_path, monkeypatch):
    """A write that fails half-way (as an interrupt would) leaves no file at the target."""
    import anndata as ad

    import sccluster

    adata, inp = small
    out = tmp_path / "result.h5ad"

    def broken_write(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half-written")
        raise KeyboardInterrupt

    monkeypatch.setattr(ad.AnnData, "write_h5ad", broken_write)
    monkeypatch.setattr(ad.AnnData, "write", broken_write, raising=False)
    with pytest.raises(KeyboardInterrupt):
        sccluster.io.write_h5ad(adata.copy(), out, inputs=(inp,))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupt_exits_130_without_output(small, tmp_path, monkeypatch, capsys):
    """Ctrl-C during clustering: exit 130, one line, no output file."""
    from sccluster import cli, tl

    _, inp = small
    out = tmp_path / "result.h5ad"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tl, "cluster", interrupted)
    code = cli.main(["-q", "cluster", str(inp), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not out.exists()


def test_cuda_index_beyond_the_machine_is_an_input_error(monkeypatch):
    import torch

    from sccluster import InputError
    from sccluster._utils import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(InputError, match="1 CUDA device"):
        resolve_device("cuda:3")
