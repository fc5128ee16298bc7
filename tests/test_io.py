"""sccluster.io: every reader round-trips names and values, bad input gives one clear line."""

from __future__ import annotations

import gzip
import hashlib
import logging
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from sccluster import InputError, read
from sccluster.datasets import synthetic
from sccluster.io import is_raw_counts, write_h5ad


@pytest.fixture
def small():
    """40 cells x 30 genes of integer counts with unique names."""
    return synthetic(n_cells=40, n_genes=30, n_clusters=2, n_markers=5, random_state=1)


@pytest.fixture
def log_records():
    """Capture records of the 'sccluster' logger, whatever its level."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = _Keep(level=logging.DEBUG)
    logger = logging.getLogger("sccluster")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def md5(path: Path) -> str:
    if path.is_dir():
        return "".join(md5(p) for p in sorted(path.iterdir()))
    return hashlib.md5(path.read_bytes()).hexdigest()


# --- writers of each format, written here the way the tools in the wild write them ---------------


def write_10x_h5(adata, path: Path) -> None:
    """CellRanger v3 layout: genes x cells CSC (= cells x genes CSR) under /matrix."""
    X = sp.csr_matrix(adata.X)
    n_genes = adata.n_vars
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["data"] = X.data.astype(np.int32)
        m["indices"] = X.indices.astype(np.int64)
        m["indptr"] = X.indptr.astype(np.int64)
        m["shape"] = np.array([n_genes, adata.n_obs], dtype=np.int32)
        m["barcodes"] = np.array(adata.obs_names, dtype="S")
        feat = m.create_group("features")
        feat["name"] = np.array(adata.var_names, dtype="S")
        feat["id"] = np.array([f"ENSG{j:011d}" for j in range(n_genes)], dtype="S")
        feat["feature_type"] = np.array(["Gene Expression"] * n_genes, dtype="S")
        feat["genome"] = np.array(["GRCh38"] * n_genes, dtype="S")
        feat["_all_tag_keys"] = np.array([b"genome"])


def write_mtx_dir(adata, folder: Path, *, gz: bool = True, legacy: bool = False, names=None) -> None:
    """10x Matrix Market folder: matrix is genes x cells."""
    folder.mkdir()
    names = list(adata.var_names) if names is None else names
    ids = [f"ENSG{j:011d}" for j in range(adata.n_vars)]
    suffix = ".gz" if gz else ""
    opener = gzip.open if gz else open
    scipy.io.mmwrite(folder / "matrix.mtx", sp.coo_matrix(adata.X.T).astype(np.int64), field="integer")
    if gz:
        raw = (folder / "matrix.mtx").read_bytes()
        (folder / "matrix.mtx").unlink()
        with gzip.open(folder / "matrix.mtx.gz", "wb") as fh:
            fh.write(raw)
    with opener(folder / f"barcodes.tsv{suffix}", "wt") as fh:
        fh.write("".join(f"{b}\n" for b in adata.obs_names))
    feature_file = f"genes.tsv{suffix}" if legacy else f"features.tsv{suffix}"
    with opener(folder / feature_file, "wt") as fh:
        for i, n in zip(ids, names, strict=True):
            fh.write(f"{i}\t{n}\n" if legacy else f"{i}\t{n}\tGene Expression\n")


def write_table(adata, path: Path, sep: str) -> None:
    df = pd.DataFrame(adata.X.toarray().astype(int), index=adata.obs_names, columns=adata.var_names)
    df.to_csv(path, sep=sep, compression="infer")


def assert_same(got, expected) -> None:
    assert got.shape == expected.shape
    assert list(got.obs_names) == list(expected.obs_names)
    assert list(got.var_names) == list(expected.var_names)
    assert sp.isspmatrix_csr(got.X) or isinstance(got.X, sp.csr_array)
    assert got.X.dtype == np.float32
    np.testing.assert_array_equal(got.X.toarray(), expected.X.toarray())


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("data.h5ad", "h5ad"),
        ("data.h5", "10x_h5"),
        ("data.loom", "loom"),
        ("data.csv", "csv"),
        ("data.tsv", "tsv"),
        ("data.csv.gz", "csv"),
        ("data.txt", "txt"),
    ],
)
def test_round_trip_files(small, tmp_path, name, fmt):
    path = tmp_path / name
    if fmt == "h5ad":
        small.write_h5ad(path)
    elif fmt == "10x_h5":
        write_10x_h5(small, path)
    elif fmt == "loom":
        small.write_loom(path)
    else:
        write_table(small, path, "," if fmt == "csv" else "\t")
    before = md5(path)
    got = read(path)
    assert_same(got, small)
    assert got.uns["sccluster_io"] == {"source": str(path), "format": fmt, "X_is_raw_counts": True}
    np.testing.assert_array_equal(got.layers["counts"].toarray(), small.X.toarray())
    assert md5(path) == before


@pytest.mark.parametrize(("gz", "legacy"), [(True, False), (False, False), (False, True)])
def test_round_trip_mtx_folder(small, tmp_path, gz, legacy):
    folder = tmp_path / "filtered_feature_bc_matrix"
    write_mtx_dir(small, folder, gz=gz, legacy=legacy)
    before = md5(folder)
    got = read(folder)
    assert_same(got, small)
    assert got.var["gene_ids"].iloc[3] == "ENSG00000000003"
    assert got.uns["sccluster_io"]["format"] == "10x_mtx"
    assert md5(folder) == before


def test_10x_h5_gene_ids_kept(small, tmp_path):
    write_10x_h5(small, tmp_path / "x.h5")
    got = read(tmp_path / "x.h5")
    assert got.var["gene_ids"].iloc[0] == "ENSG00000000000"


def test_backed_read_keeps_file_and_detects_counts(small, tmp_path):
    path = tmp_path / "data.h5ad"
    small.write_h5ad(path)
    before = md5(path)
    got = read(path, backed="r")
    assert got.isbacked
    assert got.uns["sccluster_io"]["X_is_raw_counts"] is True
    assert "counts" not in got.layers
    np.testing.assert_array_equal(got.X[:5].toarray(), small.X[:5].toarray())
    got.file.close()
    assert md5(path) == before


def test_anndata_layout_h5_is_read_as_h5ad(small, tmp_path):
    small.write_h5ad(tmp_path / "anndata.h5")
    assert_same(read(tmp_path / "anndata.h5"), small)


def test_format_argument_overrides_extension(small, tmp_path):
    path = tmp_path / "counts.data"
    write_table(small, path, ",")
    assert_same(read(path, format="csv"), small)


def test_dense_integer_h5ad_becomes_csr_float32(small, tmp_path):
    dense = ad.AnnData(X=small.X.toarray().astype(np.int64), obs=small.obs, var=small.var)
    dense.write_h5ad(tmp_path / "d.h5ad")
    assert_same(read(tmp_path / "d.h5ad"), small)


def test_duplicate_names_made_unique_with_warning(small, tmp_path, log_records):
    names = list(small.var_names)
    names[1] = names[0]
    write_mtx_dir(small, tmp_path / "mtx", names=names)
    got = read(tmp_path / "mtx")
    assert got.var_names.is_unique
    assert got.var_names[0] == names[0]
    assert any("duplicated" in r.getMessage() and r.levelno == logging.WARNING for r in log_records)


def test_counts_layer_is_independent_copy_by_default(small, tmp_path):
    small.write_h5ad(tmp_path / "a.h5ad")
    got = read(tmp_path / "a.h5ad")
    got.X.data *= 2  # what scanpy.pp.normalize_total / log1p do in place
    np.testing.assert_array_equal(got.layers["counts"].toarray(), small.X.toarray())
    shared = read(tmp_path / "a.h5ad", share_counts=True)
    assert shared.layers["counts"] is shared.X


def test_normalised_x_is_not_raw_counts(small, tmp_path):
    lognorm = small.copy()
    lognorm.X = lognorm.X.copy()
    lognorm.X.data = np.log1p(lognorm.X.data)
    lognorm.layers["raw"] = small.X.copy()
    lognorm.write_h5ad(tmp_path / "n.h5ad")
    got = read(tmp_path / "n.h5ad", layer="raw")
    info = got.uns["sccluster_io"]
    assert info["X_is_raw_counts"] is False and info["layer_is_raw_counts"] is True
    assert info["counts_layer"] == "raw"
    assert "counts" not in got.layers


# --- text orientation -----------------------------------------------------------------------------


def test_transposed_csv_warns_and_transpose_flips(small, tmp_path, log_records):
    path = tmp_path / "genes_by_cells.csv"
    df = pd.DataFrame(small.X.toarray().T.astype(int), index=small.var_names, columns=small.obs_names)
    df.to_csv(path)
    with pytest.warns(UserWarning, match="transpose=True"):
        as_is = read(path)
    assert as_is.shape == (small.n_vars, small.n_obs)
    assert any(r.levelno == logging.WARNING and "genes x cells" in r.getMessage() for r in log_records)
    assert_same(read(path, transpose=True), small)


def test_correct_orientation_does_not_warn(small, tmp_path, recwarn):
    write_table(small, tmp_path / "ok.csv", ",")
    read(tmp_path / "ok.csv")
    assert not [w for w in recwarn if "transpose" in str(w.message)]


def test_gene_x_cell_with_real_looking_names_warns(tmp_path):
    genes = ["MT-CO1", "ACTB", "ENSG00000141510", "CD3E"]
    cells = [f"AAACCTGAGAAGGCC{i}-1" for i in "ACGT"] + ["AAACCTGAGAAGGCCA-2"]
    df = pd.DataFrame(np.arange(20).reshape(4, 5), index=genes, columns=cells)
    df.to_csv(tmp_path / "t.tsv", sep="\t")
    with pytest.warns(UserWarning, match="genes x cells"):
        read(tmp_path / "t.tsv")


# --- raw count detection ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0, 0.5])
def test_is_raw_counts_rejects_bad_values(small, bad):
    assert is_raw_counts(small)
    X = small.X.copy()
    X.data[-1] = bad  # the last row: only found when the sample reaches the end
    small.X = X
    assert not is_raw_counts(small)
    assert not is_raw_counts(small, n_check=None)


def test_is_raw_counts_on_dense_layer_and_backed(small, tmp_path):
    small.layers["dense"] = small.X.toarray()
    assert is_raw_counts(small, "dense")
    small.layers["scaled"] = small.X.toarray() / 3.0
    assert not is_raw_counts(small, "scaled")
    small.write_h5ad(tmp_path / "b.h5ad")
    backed = ad.read_h5ad(tmp_path / "b.h5ad", backed="r")
    assert is_raw_counts(backed, n_check=7)
    with pytest.raises(InputError, match="layer 'nope' not found"):
        is_raw_counts(small, "nope")


# --- bad input ------------------------------------------------------------------------------------


def _assert_one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found") as err:
        read(tmp_path / "nope.h5ad")
    _assert_one_line(err)


def test_unknown_extension(tmp_path):
    (tmp_path / "data.xyz").write_text("1,2\n")
    with pytest.raises(InputError, match="unknown format") as err:
        read(tmp_path / "data.xyz")
    assert "supported" in _assert_one_line(err)


def test_folder_that_is_not_10x(tmp_path):
    (tmp_path / "matrix.mtx").write_text("")
    with pytest.raises(InputError, match="not a 10x Matrix Market folder") as err:
        read(tmp_path)
    assert "barcodes" in _assert_one_line(err)


@pytest.mark.parametrize("name", ["bad.h5ad", "bad.h5", "bad.loom", "bad.csv.gz"])
def test_corrupt_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError, match="could not read") as err:
        read(path)
    _assert_one_line(err)


def test_non_numeric_table(tmp_path):
    (tmp_path / "t.csv").write_text(",g1,g2\nc1,1,x\nc2,3,4\n")
    with pytest.raises(InputError, match="non-numeric"):
        read(tmp_path / "t.csv")


@pytest.mark.parametrize("kind", ["h5ad_no_cells", "csv_header_only", "h5ad_no_genes"])
def test_empty_matrix(tmp_path, kind):
    if kind == "csv_header_only":
        path = tmp_path / "e.csv"
        path.write_text(",g1,g2\n")
    else:
        shape = (0, 5) if kind == "h5ad_no_cells" else (5, 0)
        path = tmp_path / "e.h5ad"
        ad.AnnData(X=sp.csr_matrix(shape, dtype=np.float32)).write_h5ad(path)
    with pytest.raises(InputError, match="empty matrix") as err:
        read(path)
    _assert_one_line(err)


def test_bad_options(small, tmp_path):
    small.write_h5ad(tmp_path / "a.h5ad")
    write_table(small, tmp_path / "a.csv", ",")
    with pytest.raises(InputError, match="backed"):
        read(tmp_path / "a.h5ad", backed="r+")
    with pytest.raises(InputError, match="only for .h5ad"):
        read(tmp_path / "a.csv", backed="r")
    with pytest.raises(InputError, match="transpose=True is only"):
        read(tmp_path / "a.h5ad", transpose=True)
    with pytest.raises(InputError, match="layer 'raw' not found"):
        read(tmp_path / "a.h5ad", layer="raw")
    with pytest.raises(InputError, match="unknown format 'xls'"):
        read(tmp_path / "a.csv", format="xls")


# --- writing --------------------------------------------------------------------------------------


def test_write_h5ad_round_trip_and_compression(small, tmp_path):
    out = write_h5ad(small, tmp_path / "out.h5ad", compression="gzip")
    assert out == tmp_path / "out.h5ad"
    assert_same(read(out), small)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]


def test_write_h5ad_failure_leaves_nothing(small, tmp_path, monkeypatch):
    def broken(self, filename, **kwargs):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", broken)
    with pytest.raises(OSError, match="disk full"):
        write_h5ad(small, tmp_path / "out.h5ad")
    assert list(tmp_path.iterdir()) == []


def test_write_h5ad_failure_keeps_previous_file(small, tmp_path, monkeypatch):
    target = tmp_path / "out.h5ad"
    target.write_bytes(b"previous")
    monkeypatch.setattr(ad.AnnData, "write_h5ad", lambda self, f, **k: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        write_h5ad(small, target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]


def test_write_h5ad_refuses_input(small, tmp_path):
    path = tmp_path / "in.h5ad"
    small.write_h5ad(path)
    before = md5(path)
    with pytest.raises(InputError, match="is the input file"):
        write_h5ad(small, path, inputs=(path,))
    loaded = read(path)  # records its source, so writing back onto it is refused too
    with pytest.raises(InputError, match="is the input file"):
        write_h5ad(loaded, path)
    backed = read(path, backed="r")
    with pytest.raises(InputError, match="is the input file"):
        write_h5ad(backed, path)
    backed.file.close()
    assert md5(path) == before
