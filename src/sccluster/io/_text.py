"""Delimited text tables (csv / tsv / txt, optionally gzipped), read chunk by chunk into CSR.

The table must be cells x genes: cell names in the first column, gene names in the header. It is
parsed in row chunks, each converted to CSR ``float32`` at once, so at most one chunk is ever dense.

Orientation heuristic (:func:`looks_transposed`): the table looks transposed (genes x cells) when
the row names look like genes and the column names do not (Ensembl IDs, mitochondrial ``MT-``
symbols, ``gene_<j>`` placeholders), or the column names look like cells and the row names do not
(10x-style barcodes ``ACGT...``, ``cell_<i>``), or, when names say nothing, there are more than ten
times as many rows as columns and fewer than 1,000 columns (20,000 genes x 500 cells, say).
"""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sccluster._errors import InputError

logger = logging.getLogger(__name__)


class OrientationWarning(UserWarning):
    """A text table looks like genes x cells (the reader logs the same message at level WARNING)."""


#: Rows parsed (and densified) at once.
TEXT_CHUNK_ROWS = 2000

_GENE_LIKE = re.compile(r"^(ENS[A-Z]*G\d{6,}(\.\d+)?|(MT|mt|Mt)-[A-Za-z0-9]+|gene[_\-.]?\d+)$", re.IGNORECASE)
_CELL_LIKE = re.compile(r"([ACGTN]{8,})|^(cell[_\-.]?\d+)$", re.IGNORECASE)


def _open_text(path: Path):
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt")
    return open(path, encoding="utf-8", newline="")


def sniff_separator(path: Path, fmt: str) -> str:
    """Separator of a table: by format for csv/tsv, from the header line for txt."""
    if fmt == "csv":
        return ","
    if fmt == "tsv":
        return "\t"
    with _open_text(path) as fh:
        header = fh.readline()
    if "\t" in header:
        return "\t"
    if "," in header:
        return ","
    return r"\s+"


def _fraction(names, pattern: re.Pattern, limit: int = 500) -> float:
    sample = [str(n) for n in names[:limit]]
    if not sample:
        return 0.0
    hits = sum(1 for n in sample if pattern.search(n) and not (pattern is _CELL_LIKE and _GENE_LIKE.match(n)))
    return hits / len(sample)


def looks_transposed(row_names, col_names) -> bool:
    """Whether a table read as cells x genes looks like it is genes x cells (see module notes)."""
    rows_gene = _fraction(row_names, _GENE_LIKE) >= 0.5 or any(
        re.match(r"^(MT|mt|Mt)-", str(n)) for n in row_names
    )
    cols_gene = _fraction(col_names, _GENE_LIKE) >= 0.5 or any(
        re.match(r"^(MT|mt|Mt)-", str(n)) for n in col_names
    )
    rows_cell = _fraction(row_names, _CELL_LIKE) >= 0.5
    cols_cell = _fraction(col_names, _CELL_LIKE) >= 0.5
    if (rows_gene and not cols_gene) or (cols_cell and not rows_cell):
        return True
    if rows_gene or cols_gene or rows_cell or cols_cell:
        return False
    n_rows, n_cols = len(row_names), len(col_names)
    return n_rows > 10 * n_cols and n_cols < 1000


def read_text(path: Path, fmt: str, transpose: bool | None):
    """Read a delimited cells x genes table into an AnnData with CSR float32 ``X``.

    Returns the AnnData and a warning message when the orientation looks wrong (else ``None``);
    the caller logs and warns so that the warning points at user code.
    """
    import anndata as ad

    sep = sniff_separator(path, fmt)
    engine = "python" if sep == r"\s+" else "c"
    blocks: list[sp.csr_matrix] = []
    row_names: list[np.ndarray] = []
    columns = None
    reader = pd.read_csv(path, sep=sep, index_col=0, chunksize=TEXT_CHUNK_ROWS, engine=engine)
    with reader:
        for chunk in reader:
            if columns is None:
                columns = chunk.columns.astype(str).to_numpy()
            try:
                values = chunk.to_numpy(dtype=np.float32)
            except (ValueError, TypeError) as err:
                msg = (
                    f"{str(path)!r} holds non-numeric values ({' '.join(str(err).split())[:80]}); the table must "
                    "be cells x genes with cell names in the first column and gene names in the header"
                )
                raise InputError(msg) from err
            blocks.append(sp.csr_matrix(values))
            row_names.append(chunk.index.astype(str).to_numpy())
    if columns is None:
        columns = np.array([], dtype=str)
    n_cols = len(columns)
    X = (
        sp.vstack(blocks, format="csr", dtype=np.float32)
        if blocks
        else sp.csr_matrix((0, n_cols), dtype=np.float32)
    )
    rows = np.concatenate(row_names) if row_names else np.array([], dtype=str)
    warning = None
    if transpose:
        X = sp.csr_matrix(X.T, dtype=np.float32)
        rows, columns = columns, rows
    elif transpose is None and X.shape[0] and X.shape[1] and looks_transposed(rows, columns):
        warning = (
            f"{path.name}: the table looks like genes x cells ({X.shape[0]} rows named like "
            f"{rows[0]!r}, {X.shape[1]} columns named like {columns[0]!r}), but cells x genes is expected; "
            "flip it with transpose=True in scc.read (--transpose on the command line), or pass transpose=False "
            "to read it as it is without this check"
        )
    X.sort_indices()
    adata = ad.AnnData(X=X, obs=pd.DataFrame(index=pd.Index(rows)), var=pd.DataFrame(index=pd.Index(columns)))
    return adata, warning
