"""Raw counts of an AnnData, streamed as row chunks, never densified as a whole.

:class:`CountSource` is the one mini-batch source of the package: every model reads its input
through it. It finds the raw counts (``layers["counts"]``, a named layer, or ``X``), restricts them
to a gene list (aligned by name), provides per-cell size factors, and yields dense row blocks of a
bounded size from an in-memory CSR matrix or a backed (on-disk) ``.h5ad``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sccluster._errors import InputError
from sccluster._validation import check_counts_block, is_disk_matrix, on_disk
from sccluster.pp._stream import counts_matrix, to_csr

logger = logging.getLogger(__name__)

#: Rows read from disk or converted to dense at once when streaming.
DEFAULT_CHUNK = 4096


@dataclass
class Batch:
    """One mini-batch of cells.

    Attributes
    ----------
    index
        Row positions of the cells in the AnnData, shape ``(B,)``.
    counts
        Dense raw counts of the selected genes, ``float32``, shape ``(B, G)``.
    size_factors
        Per-cell size factors, ``float32``, shape ``(B,)``.
    batch_codes
        Per-cell batch codes, ``int64``, shape ``(B,)``, when the source has a batch covariate, else ``None``.
    """

    index: np.ndarray
    counts: np.ndarray
    size_factors: np.ndarray
    batch_codes: np.ndarray | None = None


class CountSource:
    """Read-only access to raw counts, restricted to ``genes`` and streamed by rows.

    Parameters
    ----------
    adata
        AnnData, in memory or backed (``backed="r"``).
    genes
        Gene names to use, in this order. ``None`` uses every gene. A name missing from
        ``adata.var_names`` raises :class:`InputError`.
    layer
        Where the raw counts are: a layer name, ``"X"``, or ``None`` for ``layers["counts"]``
        when present, else ``X``.
    size_factors
        Explicit per-cell size factors. ``None`` uses ``obs["size_factors"]`` when present, otherwise
        library size divided by ``reference_total`` (or by the median library size).
    reference_total
        Library size that maps to a size factor of 1; models store the training value here so
        that new cells are normalised like the training cells. ``None`` sets it from these data:
        the median library size, or, when size factors are given, the median of library size /
        size factor (exactly the median library size for the factors of :func:`sccluster.pp.prepare`).
    check
        Validate (on the first chunk) that the matrix holds non-negative integer counts.
    batch_codes
        Optional integer batch code of every cell (``(n_obs,)``, see :func:`sccluster.data.read_batches`),
        handed out with each mini-batch.
    """

    def __init__(
        self,
        adata,
        *,
        genes: Sequence[str] | np.ndarray | None = None,
        layer: str | None = None,
        size_factors: np.ndarray | None = None,
        reference_total: float | None = None,
        check: bool = True,
        batch_codes: np.ndarray | None = None,
    ) -> None:
        self.adata = adata
        self.matrix, self.where = counts_matrix(adata, layer)
        #: Whether the counts are read from disk (a backed file, or a lazily read layer or zarr store).
        self.on_disk = on_disk(adata) or is_disk_matrix(self.matrix)
        self.n_obs = int(adata.n_obs)
        var_names = adata.var_names
        if genes is None:
            self.genes = np.asarray(var_names, dtype=object)
            self.gene_index = None
        else:
            genes = [str(g) for g in genes]
            if not var_names.is_unique:
                repeated = var_names[var_names.duplicated()].unique()
                msg = (
                    f"{len(repeated)} gene names occur more than once in var_names (e.g. {repeated[0]!r}), so "
                    "genes cannot be matched by name; call adata.var_names_make_unique() and retry"
                )
                raise InputError(msg)
            pos = var_names.get_indexer(genes)
            missing = [g for g, p in zip(genes, pos, strict=True) if p < 0]
            if missing:
                shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
                msg = (
                    f"{len(missing)} of the model's {len(genes)} genes are missing from the data ({shown}); "
                    "give data with the same gene names (var_names) as the training data"
                )
                raise InputError(msg)
            self.genes = np.asarray(genes, dtype=object)
            self.gene_index = None if np.array_equal(pos, np.arange(adata.n_vars)) else pos
        self.n_genes = len(self.genes)
        if check:
            first = self._read_rows(0, min(self.n_obs, DEFAULT_CHUNK), all_genes=True)
            check_counts_block(first, self.where)
        self.reference_total = reference_total
        self.size_factors = self._resolve_size_factors(size_factors)
        if batch_codes is not None:
            batch_codes = np.asarray(batch_codes, dtype=np.int64).ravel()
            if batch_codes.shape[0] != self.n_obs:
                msg = f"batch_codes has {batch_codes.shape[0]} entries but the data have {self.n_obs} cells"
                raise ValueError(msg)
        self.batch_codes = batch_codes

    # ------------------------------------------------------------------ reading
    def _read_rows(self, start: int, stop: int, *, all_genes: bool = False) -> sp.csr_matrix:
        block = to_csr(self.matrix[start:stop])
        if not all_genes and self.gene_index is not None:
            block = block[:, self.gene_index]
        return block

    def _take(self, index: np.ndarray) -> sp.csr_matrix:
        """Rows at arbitrary positions (any order), as CSR over the selected genes."""
        order = np.argsort(index, kind="stable")
        sorted_idx = index[order]
        if self.on_disk:
            # Backed datasets read fastest as one contiguous span around the requested rows.
            lo, hi = int(sorted_idx[0]), int(sorted_idx[-1]) + 1
            if hi - lo <= 4 * len(index):
                block = self._read_rows(lo, hi)[sorted_idx - lo]
            else:
                block = to_csr(self.matrix[sorted_idx])
                if self.gene_index is not None:
                    block = block[:, self.gene_index]
        else:
            block = to_csr(self.matrix[sorted_idx])
            if self.gene_index is not None:
                block = block[:, self.gene_index]
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return block[inverse]

    def iter_chunks(
        self, chunk_size: int = DEFAULT_CHUNK, *, all_genes: bool = False
    ) -> Iterator[tuple[int, int, sp.csr_matrix]]:
        """Yield ``(start, stop, csr_block)`` over all rows in order."""
        for start in range(0, self.n_obs, chunk_size):
            stop = min(start + chunk_size, self.n_obs)
            yield start, stop, self._read_rows(start, stop, all_genes=all_genes)

    def library_sizes(self) -> np.ndarray:
        """Total counts per cell over all genes of the matrix (streamed)."""
        totals = np.empty(self.n_obs, dtype=np.float64)
        for start, stop, block in self.iter_chunks(all_genes=True):
            if start > 0:  # the first chunk was checked in __init__
                check_counts_block(block, self.where)
            totals[start:stop] = np.asarray(block.sum(axis=1)).ravel()
        return totals

    def _resolve_size_factors(self, size_factors: np.ndarray | None) -> np.ndarray:
        if size_factors is None and "size_factors" in self.adata.obs:
            size_factors = self.adata.obs["size_factors"].to_numpy()
        if size_factors is None:
            totals = self.library_sizes()
            if np.any(totals <= 0):
                n_zero = int(np.sum(totals <= 0))
                msg = (
                    f"{n_zero} cells have no counts; remove empty cells (scc.pp.prepare does this) and retry"
                )
                raise InputError(msg)
            if self.reference_total is None:
                self.reference_total = float(np.median(totals))
            size_factors = totals / self.reference_total
        size_factors = np.asarray(size_factors, dtype=np.float64).ravel()
        if size_factors.shape[0] != self.n_obs:
            msg = f"size_factors has {size_factors.shape[0]} entries but the data have {self.n_obs} cells"
            raise InputError(msg)
        if not np.all(np.isfinite(size_factors)) or np.any(size_factors <= 0):
            msg = "size factors must be positive and finite; remove empty cells (scc.pp.prepare does this) and retry"
            raise InputError(msg)
        if self.reference_total is None:
            # Given factors (scc.pp.prepare writes library size / median): the library size that maps
            # to a factor of 1 is their median ratio, so cells without factors are later scaled alike.
            self.reference_total = float(np.median(self.library_sizes() / size_factors))
        return size_factors.astype(np.float32)

    # ------------------------------------------------------------------ batches
    def batch(self, index: np.ndarray) -> Batch:
        """Dense counts and size factors of the cells at ``index``."""
        index = np.asarray(index, dtype=np.int64)
        block = self._take(index)
        codes = None if self.batch_codes is None else self.batch_codes[index]
        return Batch(
            index=index, counts=block.toarray().astype(np.float32, copy=False), size_factors=self.size_factors[index],
            batch_codes=codes,
        )  # fmt: skip

    def iter_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        rng: np.random.Generator | None = None,
        indices: np.ndarray | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Yield mini-batches of dense counts.

        Parameters
        ----------
        batch_size
            Cells per batch.
        shuffle
            Visit cells in a random order drawn from ``rng`` (required when shuffling): the same
            permutation for data in memory and on disk (backed), so a fit gives the same result on both.
        indices
            Restrict to these cell positions (for example a training subsample).
        drop_last
            Skip a final batch smaller than ``batch_size``.
        """
        idx = np.arange(self.n_obs) if indices is None else np.asarray(indices, dtype=np.int64)
        if shuffle:
            if rng is None:
                msg = "shuffle=True needs a numpy Generator (rng)"
                raise ValueError(msg)
            idx = rng.permutation(idx)
        selections = [idx[start : start + batch_size] for start in range(0, len(idx), batch_size)]
        if drop_last and selections and len(selections[-1]) < batch_size:
            selections.pop()
        if self.on_disk:  # the next batch is read from disk while the caller works on this one
            yield from _prefetched(self.batch, selections)
        else:
            for sel in selections:
                yield self.batch(sel)


def _prefetched(read, items: list) -> Iterator:
    """``read(item)`` for each of ``items`` in order, the next one read in a background thread meanwhile.

    One read is ahead at most, so memory grows by one batch. Closing the generator waits for that read to end.
    """
    from concurrent.futures import ThreadPoolExecutor

    if not items:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sccluster-prefetch") as pool:
        pending = pool.submit(read, items[0])
        for item in items[1:]:
            current = pending.result()
            pending = pool.submit(read, item)
            yield current
        yield pending.result()
