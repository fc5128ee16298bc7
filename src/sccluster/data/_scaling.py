"""Per-batch log-normalisation, z-scoring and clipping with statistics fitted by streaming."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._counts import CountSource


@dataclass
class Scaler:
    """z-score of ``log1p(counts / size_factor)`` per gene, clipped to ``±max_value``.

    The statistics are fitted in one streamed pass (:meth:`fit`) and then applied per batch, so no
    dense cells x genes matrix is ever built for the whole dataset.

    Attributes
    ----------
    mean, std
        Per-gene mean and standard deviation of the log-normalised values, shape ``(G,)``.
    max_value
        Clip bound applied after scaling (scanpy's ``max_value``); ``None`` disables clipping.
    """

    mean: np.ndarray
    std: np.ndarray
    max_value: float | None = 10.0

    @classmethod
    def fit(cls, source: CountSource, *, max_value: float | None = 10.0, indices: np.ndarray | None = None) -> Scaler:
        """Fit per-gene statistics on ``source`` (optionally on the cells at ``indices`` only)."""
        total = np.zeros(source.n_genes, dtype=np.float64)
        total_sq = np.zeros(source.n_genes, dtype=np.float64)
        n = 0
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
        mean = total / max(n, 1)
        var = np.maximum(total_sq / max(n, 1) - mean**2, 0.0) * n / max(n - 1, 1)
        std = np.sqrt(var)
        std[std == 0] = 1.0
        return cls(mean=mean.astype(np.float32), std=std.astype(np.float32), max_value=max_value)

    def transform(self, counts: np.ndarray, size_factors: np.ndarray) -> np.ndarray:
        """Scale a dense batch of counts, shape ``(B, G)``, with numpy."""
        x = np.log1p(counts / size_factors[:, None])
        x = (x - self.mean) / self.std
        if self.max_value is not None:
            np.clip(x, -self.max_value, self.max_value, out=x)
        return x.astype(np.float32, copy=False)

    def transform_torch(self, counts, size_factors):
        """Scale a dense batch of counts held in torch tensors (same device as the inputs)."""
        import torch

        mean = torch.as_tensor(self.mean, device=counts.device)
        std = torch.as_tensor(self.std, device=counts.device)
        x = (torch.log1p(counts / size_factors[:, None]) - mean) / std
        if self.max_value is not None:
            x = x.clamp(-self.max_value, self.max_value)
        return x

    def state_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "max_value": self.max_value}

    @classmethod
    def from_state_dict(cls, state: dict) -> Scaler:
        return cls(mean=np.asarray(state["mean"]), std=np.asarray(state["std"]), max_value=state["max_value"])
