"""Log-normalisation, z-scoring (per batch covariate when given) and clipping, fitted by streaming."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._counts import CountSource


@dataclass
class Scaler:
    """z-score of ``log1p(counts / size_factor)`` per gene, clipped to ``±max_value``.

    The statistics are fitted in one streamed pass (:meth:`fit`) and then applied per mini-batch, so no
    dense cells x genes matrix is ever built for the whole dataset.

    With a batch covariate (``batch_mean`` / ``batch_std`` set, see :meth:`fit`'s ``batch_codes``) each
    cell is z-scored with the statistics of its own batch (donor, sample, ...), so a batch effect that
    shifts a gene's log expression in all cells of a batch is removed before the encoder sees the cell.

    Attributes
    ----------
    mean, std
        Per-gene mean and standard deviation of the log-normalised values, shape ``(G,)`` (over all
        cells, pooled over batches).
    max_value
        Clip bound applied after scaling (scanpy's ``max_value``); ``None`` disables clipping.
    batch_mean, batch_std
        Per-batch statistics, shape ``(n_batches, G)`` (row ``b`` is batch code ``b``), or ``None``
        without batches.
    """

    mean: np.ndarray
    std: np.ndarray
    max_value: float | None = 10.0
    batch_mean: np.ndarray | None = None
    batch_std: np.ndarray | None = None

    @classmethod
    def fit(
        cls,
        source: CountSource,
        *,
        max_value: float | None = 10.0,
        indices: np.ndarray | None = None,
        batch_codes: np.ndarray | None = None,
        n_batches: int | None = None,
    ) -> Scaler:
        """Fit per-gene statistics on ``source`` (optionally on the cells at ``indices`` only).

        ``batch_codes`` (one integer code in ``[0, n_batches)`` per cell of ``source``, or ``None``)
        also fits the statistics of every batch in the same pass, summed per batch chunk by chunk
        (a sparse batch x chunk indicator; nothing of size batches x cells). A batch without cells among
        those fitted gets the pooled statistics.
        """
        total = np.zeros(source.n_genes, dtype=np.float64)
        total_sq = np.zeros(source.n_genes, dtype=np.float64)
        n = 0
        if batch_codes is not None:
            n_codes = int(n_batches if n_batches is not None else batch_codes.max() + 1)
            b_total = np.zeros((n_codes, source.n_genes), dtype=np.float64)
            b_total_sq = np.zeros((n_codes, source.n_genes), dtype=np.float64)
            b_n = np.zeros(n_codes, dtype=np.int64)
        if indices is None:
            chunks = ((np.arange(a, b), blk) for a, b, blk in source.iter_chunks())
        else:
            idx = np.sort(np.asarray(indices, dtype=np.int64))
            chunks = ((idx[i : i + 4096], source._take(idx[i : i + 4096])) for i in range(0, len(idx), 4096))
        for rows, block in chunks:
            block = block.astype(np.float64)
            sf = source.size_factors[rows].astype(np.float64)
            block = block.multiply(1.0 / sf[:, None]).tocsr()
            block.data = np.log1p(block.data)
            total += np.asarray(block.sum(axis=0)).ravel()
            total_sq += np.asarray(block.multiply(block).sum(axis=0)).ravel()
            n += block.shape[0]
            if batch_codes is not None:
                codes = np.asarray(batch_codes[rows], dtype=np.int64)
                onehot = sp.csr_matrix(
                    (np.ones(len(rows)), (codes, np.arange(len(rows)))), shape=(n_codes, len(rows))
                )
                b_total += (onehot @ block).toarray()
                b_total_sq += (onehot @ block.multiply(block).tocsr()).toarray()
                b_n += np.bincount(codes, minlength=n_codes)
        mean, std = _moments(total, total_sq, n)
        scaler = cls(mean=mean, std=std, max_value=max_value)
        if batch_codes is not None:
            b_mean, b_std = _moments(b_total, b_total_sq, b_n[:, None])
            empty = b_n == 0
            b_mean[empty], b_std[empty] = mean, std
            scaler.batch_mean, scaler.batch_std = b_mean, b_std
        return scaler

    @property
    def n_batches(self) -> int:
        """Number of batches with their own statistics (0 without batches)."""
        return 0 if self.batch_mean is None else int(self.batch_mean.shape[0])

    def with_batches(self, mean: np.ndarray, std: np.ndarray) -> Scaler:
        """A copy with the statistics of more batches (rows ``(k, G)``) appended after the current ones."""
        return Scaler(
            mean=self.mean, std=self.std, max_value=self.max_value,
            batch_mean=np.concatenate([self.batch_mean, np.asarray(mean, dtype=np.float32)]),
            batch_std=np.concatenate([self.batch_std, np.asarray(std, dtype=np.float32)]),
        )  # fmt: skip

    def _stats(self, batch_codes, as_array=np.asarray):
        """Mean and std to scale with: per gene, or per cell from its batch (``as_array`` converts the tables)."""
        if self.batch_mean is None:
            return as_array(self.mean), as_array(self.std)
        if batch_codes is None:
            msg = "this Scaler has per-batch statistics; pass the batch code of every cell"
            raise ValueError(msg)
        return as_array(self.batch_mean)[batch_codes], as_array(self.batch_std)[batch_codes]

    def transform(
        self, counts: np.ndarray, size_factors: np.ndarray, batch_codes: np.ndarray | None = None
    ) -> np.ndarray:
        """Scale a dense batch of counts, shape ``(B, G)``, with numpy (``batch_codes``: ``(B,)`` codes)."""
        mean, std = self._stats(batch_codes)
        x = np.log1p(counts / size_factors[:, None])
        x = (x - mean) / std
        if self.max_value is not None:
            np.clip(x, -self.max_value, self.max_value, out=x)
        return x.astype(np.float32, copy=False)

    def transform_torch(self, counts, size_factors, batch_codes=None):
        """Scale a dense batch of counts held in torch tensors (same device as the inputs).

        ``batch_codes``: a ``(B,)`` integer tensor of batch codes, required when the scaler has
        per-batch statistics (ignored otherwise).
        """
        import torch

        mean, std = self._stats(batch_codes, lambda a: torch.as_tensor(a, device=counts.device))
        x = (torch.log1p(counts / size_factors[:, None]) - mean) / std
        if self.max_value is not None:
            x = x.clamp(-self.max_value, self.max_value)
        return x

    def state_dict(self) -> dict:
        state = {"mean": self.mean, "std": self.std, "max_value": self.max_value}
        if self.batch_mean is not None:
            state["batch_mean"], state["batch_std"] = self.batch_mean, self.batch_std
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> Scaler:
        batch_mean, batch_std = state.get("batch_mean"), state.get("batch_std")
        return cls(
            mean=np.asarray(state["mean"]), std=np.asarray(state["std"]), max_value=state["max_value"],
            batch_mean=None if batch_mean is None else np.asarray(batch_mean),
            batch_std=None if batch_std is None else np.asarray(batch_std),
        )  # fmt: skip


def _moments(total: np.ndarray, total_sq: np.ndarray, n) -> tuple[np.ndarray, np.ndarray]:
    """float32 mean and (n - 1)-normalised standard deviation from sums; a zero deviation becomes 1."""
    n = np.maximum(n, 0)
    mean = total / np.maximum(n, 1)
    var = np.maximum(total_sq / np.maximum(n, 1) - mean**2, 0.0) * n / np.maximum(n - 1, 1)
    std = np.sqrt(var)
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)
