"""BGFormer's data side: training mini-batches, streamed embeddings, anchors and validation cells."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np

from sccluster.data import CountSource, Scaler

logger = logging.getLogger(__name__)

MAX_VALIDATION_CELLS = 4096
MIN_VALIDATION_CELLS = 16


def to_device(batch, device):
    """Counts, size factors and batch codes (``None`` without batches) of a mini-batch, as tensors."""
    import torch

    counts = torch.from_numpy(batch.counts).to(device)
    codes = None if batch.batch_codes is None else torch.from_numpy(batch.batch_codes).to(device)
    return counts, torch.from_numpy(batch.size_factors).to(device), codes


def steps_per_epoch(n_obs: int, batch_size: int) -> int:
    """Mini-batches in one pass over ``n_obs`` cells."""
    return math.ceil(n_obs / min(batch_size, n_obs))


def _shuffled(source: CountSource, batch_size: int, rng, indices: np.ndarray | None = None):
    """Endless shuffled mini-batches of the cells at ``indices`` (all cells when ``None``)."""
    n = source.n_obs if indices is None else len(indices)
    batch_size = min(batch_size, n)
    drop_last = n > batch_size
    while True:
        yield from source.iter_batches(
            batch_size, shuffle=True, rng=rng, indices=indices, drop_last=drop_last
        )


def training_batches(
    source: CountSource, scaler: Scaler, batch_size: int, rng, gen, device, *, noise_std: float,
    indices: np.ndarray | None = None,
) -> Iterator[dict]:  # fmt: skip
    """Endless training batches for :class:`sccluster.nn.BGFormerNet`.

    Each holds the scaled ``x``, ``x_noisy`` (``x`` plus Gaussian noise of sd ``noise_std`` drawn from
    ``gen``), counts, size factors and batch codes.

    Nothing is drawn before the first batch is asked for.
    """
    import torch

    for batch in _shuffled(source, batch_size, rng, indices):
        counts, sf, codes = to_device(batch, device)
        x = scaler.transform_torch(counts, sf, codes)
        noise = torch.randn(x.shape, generator=gen).to(device) * noise_std
        yield {"x": x, "x_noisy": x + noise, "counts": counts, "size_factors": sf, "batch_codes": codes}


def embed(
    net, source: CountSource, scaler: Scaler, device, *, indices=None, with_q: bool = False, chunk: int = 2048
):
    """Stream cells through the encoder in eval mode: ``(z, log_q or None)`` as numpy arrays."""
    import torch

    was_training = net.training
    net.eval()
    n = source.n_obs if indices is None else len(indices)
    # filled in place: no list of chunks to concatenate (half the peak at 10M cells)
    zs: np.ndarray | None = None
    qs: np.ndarray | None = None
    start = 0
    with torch.inference_mode():
        for batch in source.iter_batches(chunk, indices=indices):
            counts, sf, codes = to_device(batch, device)
            z = net.encode(scaler.transform_torch(counts, sf, codes))
            stop = start + z.shape[0]
            if zs is None:
                zs = np.empty((n, z.shape[1]), dtype=np.float32)
            zs[start:stop] = z.cpu().numpy()
            if with_q:
                log_q = net.log_q(z).cpu().numpy()
                if qs is None:
                    qs = np.empty((n, log_q.shape[1]), dtype=np.float32)
                qs[start:stop] = log_q
            start = stop
    net.train(was_training)
    assert zs is not None  # a source has at least one cell
    return zs, qs


def init_anchors(
    net, source: CountSource, scaler: Scaler, indices: np.ndarray, seed: int, rng, device
) -> None:
    """Set each block's anchors to k-means centres of its normalised inputs on a seeded sample.

    Blocks are initialised in order, so block ``l`` sees the output of the already-initialised block
    ``l−1``. Fewer sampled cells than anchors: the missing anchors are jittered copies of centres.
    """
    import torch

    from ._init_clusters import kmeans_centers

    batch = source.batch(indices)
    counts, sf, codes = to_device(batch, device)
    x = scaler.transform_torch(counts, sf, codes)
    net.eval()
    for layer, block in enumerate(net.blocks):
        h = net.block_inputs(x)[layer].cpu().numpy()
        m = block.anchors.shape[0]
        centres = kmeans_centers(h, min(m, h.shape[0]), seed + layer, n_init=1)
        if centres.shape[0] < m:
            extra = centres[rng.integers(centres.shape[0], size=m - centres.shape[0])]
            centres = np.concatenate([centres, extra + 0.01 * rng.standard_normal(extra.shape)])
        with torch.no_grad():
            block.anchors.copy_(torch.as_tensor(centres, dtype=block.anchors.dtype))
    net.train()


def split_validation(n_obs: int, fraction: float, rng) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Seeded split into sorted ``(train, validation)`` cell positions for early stopping.

    The validation set holds ``fraction`` of the cells, at most :data:`MAX_VALIDATION_CELLS`.
    Returns ``(None, None)`` when it would hold fewer than :data:`MIN_VALIDATION_CELLS`.
    """
    n_val = min(int(round(fraction * n_obs)), MAX_VALIDATION_CELLS)
    if n_val < MIN_VALIDATION_CELLS:
        logger.info("bgformer: %d cells are too few to hold out a validation set; no early stopping", n_obs)
        return None, None
    val = np.sort(rng.choice(n_obs, n_val, replace=False))
    train = np.setdiff1d(np.arange(n_obs), val, assume_unique=True)
    return train, val


class Validation:
    """Held-out cells and their clean-input ZINB loss: the early-stopping criterion (a ``train.Validator``)."""

    name = "val_zinb"

    def __init__(
        self, source: CountSource, scaler: Scaler, indices: np.ndarray, device, chunk: int = 1024
    ) -> None:
        self.counts, self.size_factors, self.batch_codes = to_device(source.batch(indices), device)
        self.scaler = scaler
        self.chunk = chunk

    def loss(self, net) -> float:
        """Mean ZINB negative log-likelihood of the held-out counts, network in eval mode."""
        import torch

        was_training = net.training
        net.eval()
        total, n = 0.0, self.counts.shape[0]
        with torch.inference_mode():
            for start in range(0, n, self.chunk):
                sl = slice(start, start + self.chunk)
                counts, sf = self.counts[sl], self.size_factors[sl]
                codes = None if self.batch_codes is None else self.batch_codes[sl]
                z = net.encode(self.scaler.transform_torch(counts, sf, codes))
                total += float(net.reconstruction_loss(z, counts, sf, codes)) * counts.shape[0]
        net.train(was_training)
        return total / n
