"""Damaged files: inconsistent sparse matrices in valid HDF5 files, corrupted bytes, temporary part files.

Every case is bad input: one :class:`~sccluster.InputError` line naming the file and the damage, in
memory and backed (streamed), never another exception.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from sccluster import InputError, read
from sccluster.datasets import synthetic
from sccluster.io import _structure, write_h5ad


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("damaged") / "good.h5ad"
    synthetic(n_cells=40, n_genes=30, n_clusters=2, n_markers=5, random_state=1).write_h5ad(path)
    return path


def _set(x: h5py.Group, name: str, values: np.ndarray) -> None:
    del x[name]
    x.create_dataset(name, data=values)


def _damage(x: h5py.Group, kind: str) -> None:
    indptr, indices = x["indptr"][:], x["indices"][:]
    if kind == "index_too_large":
        indices[3] = 10**6
        _set(x, "indices", indices)
    elif kind == "index_negative":
        indices[3] = -1
        _set(x, "indices", indices)
    elif kind == "indptr_decreasing":
        indptr[10] = indptr[12] + 5
        _set(x, "indptr", indptr)
    elif kind == "indptr_end":
        indptr[-1] -= 3
        _set(x, "indptr", indptr)
    elif kind == "indptr_start":
        indptr[0] = 2
        _set(x, "indptr", indptr)
    elif kind == "indptr_short":
        _set(x, "indptr", indptr[:-3])
    elif kind == "data_short":
        _set(x, "data", x["data"][:-4])
    elif kind == "indices_float":
        _set(x, "indices", indices.astype(np.float32))


_KINDS = {  # kind -> what the message names
    "index_too_large": "column indices reach 1,000,000",
    "index_negative": "column indices are negative",
    "indptr_decreasing": "indptr decreases",
    "indptr_end": "indptr ends at",
    "indptr_start": "indptr starts at 2",
    "indptr_short": "indptr has 38 entries for 40 rows",
    "data_short": "but data has",
    "indices_float": "float32 values instead of integers",
}


@pytest.mark.parametrize("backed", [None, "r"])
@pytest.mark.parametrize("kind", list(_KINDS))
def test_inconsistent_sparse_matrix_is_input_error(good, tmp_path, kind, backed):
    path = tmp_path / "damaged.h5ad"
    shutil.copy(good, path)
    with h5py.File(path, "r+") as f:
        _damage(f["X"], kind)
    with pytest.raises(InputError) as err:
        read(path, backed=backed)
    text = str(err.value)
    assert "\n" not in text
    assert "damaged.h5ad" in text and "damaged sparse matrix in X" in text and _KINDS[kind] in text
    assert "re-export or re-download" in text


def test_damaged_layer_is_named(good, tmp_path):
    path = tmp_path / "layer.h5ad"
    adata = read(good)
    adata.layers["raw"] = adata.X.copy()
    adata.write_h5ad(path)
    with h5py.File(path, "r+") as f:
        _damage(f["layers"]["raw"], "index_too_large")
    with pytest.raises(InputError, match=r"damaged sparse matrix in layers\['raw'\]"):
        read(path)


def test_csc_and_dense_matrices_are_checked_or_skipped():
    csc = sp.random(20, 10, density=0.3, format="csc", random_state=0)
    assert _structure.sparse_problem(csc) is None
    csc.indices[0] = 25  # a row index beyond the 20 rows
    assert "row indices reach 25" in _structure.sparse_problem(csc)
    assert _structure.sparse_problem(np.ones((3, 3))) is None


def test_backed_check_is_streamed_in_chunks(good, monkeypatch):
    """A backed matrix is read in blocks of CHUNK entries (a tiny chunk here), never at once."""
    import anndata as ad

    monkeypatch.setattr(_structure, "CHUNK", 7)
    adata = ad.read_h5ad(good, backed="r")
    try:
        assert _structure.sparse_problem(adata.X) is None
    finally:
        adata.file.close()


def test_corrupted_bytes_never_escape_as_other_errors(good, tmp_path):
    """Random bytes written over every part of the file: the read succeeds or raises InputError."""
    size = good.stat().st_size
    rng = np.random.default_rng(0)
    path = tmp_path / "corrupt.h5ad"
    outcomes = {"ok": 0, "input_error": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for offset in range(0, size, max(1, size // 16)):
            shutil.copy(good, path)
            with path.open("r+b") as fh:
                fh.seek(offset)
                fh.write(rng.bytes(16))
            for backed in (None, "r"):
                try:
                    adata = read(path, backed=backed)
                except InputError as err:
                    assert "\n" not in str(err)
                    outcomes["input_error"] += 1
                    continue
                outcomes["ok"] += 1
                if adata.isbacked:
                    adata.file.close()
    assert outcomes["input_error"] > 0


def test_corrupted_index_bytes_name_the_damage(good, tmp_path):
    path = tmp_path / "bytes.h5ad"
    shutil.copy(good, path)
    with h5py.File(path, "r") as f:
        ds = f["X"]["indices"]
        offset = ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset
    with path.open("r+b") as fh:
        fh.seek(offset + 8)
        fh.write(b"\xff" * 8)  # two int32 indices become -1
    with pytest.raises(InputError, match="column indices are negative"):
        read(path)


# --------------------------------------------------------------------------- temporary part files
def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return int(proc.stdout)


def test_stale_part_files_are_removed_live_ones_kept(good, tmp_path):
    from sccluster._utils import _host_tag

    out = tmp_path / "out.h5ad"
    host = _host_tag()
    stale = tmp_path / f".out.h5ad.{_dead_pid()}-{host}.abcd1234.part"
    live = tmp_path / f".out.h5ad.{os.getpid()}-{host}.efgh5678.part"  # a write still running
    other_host = tmp_path / f".out.h5ad.{_dead_pid()}-00000000.ijkl9012.part"  # cannot tell: kept
    foreign = tmp_path / ".out.h5ad.mnop3456.part"  # not named by sccluster: kept
    other_target = tmp_path / f".other.h5ad.{_dead_pid()}-{host}.qrst7890.part"  # another output: kept
    for part in (stale, live, other_host, foreign, other_target):
        part.write_bytes(b"half-written")
    write_h5ad(read(good), out)
    assert out.is_file()
    assert not stale.exists()
    assert live.exists() and other_host.exists() and foreign.exists() and other_target.exists()


def test_part_file_is_not_taken_for_a_result(good, tmp_path):
    part = tmp_path / f".out.h5ad.{os.getpid()}-0a1b2c3d.abcdefgh.part"
    shutil.copy(good, part)
    with pytest.raises(InputError, match="temporary file of an unfinished write"):
        read(part)
