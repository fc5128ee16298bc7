"""Reading and writing single-cell data (``.h5ad``, 10x ``.h5`` / mtx, ``.loom``, csv/tsv).

- :func:`read`: any supported format → AnnData (unique names, CSR float32 ``X``, raw counts kept
  in ``layers["counts"]``, provenance in ``uns["sccluster_io"]``); never modifies the file.
- :func:`is_raw_counts`: whether a matrix holds finite, non-negative integers (sampled, streamed).
- :func:`write_h5ad`: atomic ``.h5ad`` writer that refuses to overwrite its inputs.
"""

from __future__ import annotations

from ._counts import is_raw_counts
from ._formats import FORMATS
from ._read import read
from ._write import write_h5ad

__all__ = ["FORMATS", "is_raw_counts", "read", "write_h5ad"]
