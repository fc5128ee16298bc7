"""One reader per binary format; each opens its file read-only and returns an AnnData."""

from __future__ import annotations

import logging
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sccluster._errors import InputError

from ._formats import mtx_files

logger = logging.getLogger(__name__)

_LOOM_OBS_NAMES = ("CellID", "obs_names", "cell_names", "CellIDs", "cell_id", "barcode")
_LOOM_VAR_NAMES = ("Gene", "var_names", "gene_names", "Genes", "gene_symbols", "Accession")


def read_h5ad(path: Path, backed: str | None):
    """Read an ``.h5ad`` file into memory, or open it backed read-only (``backed="r"``).

    Backed, the sparse layers stay on disk too (anndata's sparse datasets, read by row chunks), where
    ``anndata.read_h5ad(backed="r")`` would read every layer into memory. Everything else is read as anndata
    reads it.
    """
    import anndata as ad
    import h5py

    if backed is None:
        return ad.read_h5ad(path)
    with h5py.File(path, "r") as f:
        lazy = (
            "encoding-type" in f.attrs and "layers" in f and any(_is_sparse(g) for g in f["layers"].values())
        )
    if not lazy:
        return ad.read_h5ad(path, backed=backed)
    from anndata._io.h5ad import _read_raw

    # The layers get a handle of their own: anndata closes (and later reopens) the AnnData's handle in
    # to_memory(), write_h5ad() and copy(), which would leave datasets opened through it unreadable.
    f, layer_file = h5py.File(path, "r"), h5py.File(path, "r")
    try:
        parts = {
            k: ad.io.read_elem(f[k]) for k in ("obs", "var", "obsm", "varm", "obsp", "varp", "uns") if k in f
        }
        layers = {
            k: ad.io.sparse_dataset(g) if _is_sparse(g) else ad.io.read_elem(g)
            for k, g in layer_file["layers"].items()
        }
        raw = _read_raw(f, attrs={"var", "varm"})
        adata = ad.AnnData(filename=f, layers=layers, raw=raw, **parts)
    except BaseException:
        f.close()
        layer_file.close()
        raise
    weakref.finalize(adata, layer_file.close)  # closed with the AnnData
    return adata


def _is_sparse(element) -> bool:
    """Whether an h5py / zarr element of an AnnData file is a CSR or CSC matrix."""
    return element.attrs.get("encoding-type") in ("csr_matrix", "csc_matrix")


def read_zarr(path: Path, backed: str | None):
    """Read an AnnData zarr store into memory, or with ``backed="r"`` keep its sparse ``X`` on disk.

    Backed, ``X`` and the sparse layers are anndata's on-disk sparse datasets over the store, read by row chunks;
    everything else is read into memory (as for a backed ``.h5ad``).
    """
    import anndata as ad

    if backed is None:
        return ad.read_zarr(path)
    import zarr

    group = zarr.open_group(str(path), mode="r")
    if "X" not in group or not _is_sparse(group["X"]):
        msg = (
            f"{str(path)!r} has no sparse X, and only a sparse X can stay on disk; read it into memory (no "
            "backed mode) or store X as a CSR matrix"
        )
        raise InputError(msg)
    parts = {k: ad.io.read_elem(group[k]) for k in ("obs", "var", "uns", "obsm", "varm", "obsp", "varp")
             if k in group}  # fmt: skip
    if "layers" in group:
        layers = group["layers"]
        assert isinstance(layers, zarr.Group)
        parts["layers"] = {k: ad.io.sparse_dataset(layers[k]) if _is_sparse(layers[k]) else ad.io.read_elem(layers[k])
                           for k in layers.keys()}  # fmt: skip
    return ad.AnnData(X=ad.io.sparse_dataset(group["X"]), **parts)


def read_10x_h5(path: Path):
    """Read a CellRanger HDF5 file (v2 or v3 layout); an AnnData-layout ``.h5`` is read as h5ad."""
    import h5py
    import scanpy as sc

    with h5py.File(path, "r") as f:
        keys = set(f.keys())
        is_10x = "matrix" in keys or any(isinstance(f[k], h5py.Group) and "barcodes" in f[k] for k in keys)
        is_anndata = "X" in keys and "obs" in keys
    if not is_10x:
        if is_anndata:
            logger.info("%s has the AnnData layout; reading it as .h5ad", path)
            return read_h5ad(path, None)
        msg = (
            f"{str(path)!r} is an HDF5 file but not a 10x CellRanger matrix (no 'matrix' group); "
            "pass a CellRanger .h5 or an .h5ad file"
        )
        raise InputError(msg)
    return sc.read_10x_h5(path)


def _read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)


def read_10x_mtx(folder: Path):
    """Read a 10x Matrix Market folder (genes x cells on disk) as cells x genes, symbols as names."""
    import anndata as ad
    import scipy.io

    matrix_path, barcodes_path, features_path = mtx_files(folder)
    matrix = scipy.io.mmread(matrix_path)
    barcodes = _read_table(barcodes_path).iloc[:, 0].to_numpy()
    features = _read_table(features_path)
    n_genes, n_cells = matrix.shape
    if len(barcodes) != n_cells or len(features) != n_genes:
        msg = (
            f"10x folder {str(folder)!r} is inconsistent: matrix is {n_genes} genes x {n_cells} cells but "
            f"there are {len(features)} features and {len(barcodes)} barcodes; re-export the folder"
        )
        raise InputError(msg)
    X = sp.csr_matrix(matrix.T, dtype=np.float32)
    ids = features.iloc[:, 0].to_numpy()
    symbols = features.iloc[:, 1].to_numpy() if features.shape[1] > 1 else ids
    var = pd.DataFrame({"gene_ids": ids}, index=pd.Index(symbols.astype(str)))
    if features.shape[1] > 2:
        var["feature_types"] = features.iloc[:, 2].to_numpy()
    adata = ad.AnnData(X=X, obs=pd.DataFrame(index=pd.Index(barcodes.astype(str))), var=var)
    if "feature_types" in var and (var["feature_types"] == "Gene Expression").any():
        keep = (var["feature_types"] == "Gene Expression").to_numpy()
        if not keep.all():
            logger.info("keeping the %d 'Gene Expression' features of %d", keep.sum(), keep.size)
            adata = adata[:, keep].copy()
    return adata


def _pick(available, candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        if name in available:
            return name
    return None


def read_loom(path: Path):
    """Read a ``.loom`` file; cell and gene names come from the usual attributes when present."""
    import anndata as ad
    import h5py

    with h5py.File(path, "r") as f:
        if "matrix" not in f:
            msg = f"{str(path)!r} is not a loom file (no 'matrix' dataset); pass a valid .loom file"
            raise InputError(msg)
        col_attrs = set(f["col_attrs"].keys()) if "col_attrs" in f else set()
        row_attrs = set(f["row_attrs"].keys()) if "row_attrs" in f else set()
    obs_key = _pick(col_attrs, _LOOM_OBS_NAMES) or "CellID"
    var_key = _pick(row_attrs, _LOOM_VAR_NAMES) or "Gene"
    adata = ad.io.read_loom(path, sparse=True, obs_names=obs_key, var_names=var_key, dtype="float32")
    adata.obs_names = adata.obs_names.astype(str)
    adata.var_names = adata.var_names.astype(str)
    return adata
