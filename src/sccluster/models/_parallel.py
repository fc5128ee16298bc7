"""What a deep model's fit does differently when it runs data-parallel (see :mod:`sccluster._distributed`).

On one process every function here returns what the single-process fit always used, so its labels are
unchanged. On several:

- work done once (the scaler's statistics, the anchors' initialisation, the initial centres) runs on
  rank 0, whose result and numpy generator state are then broadcast, so every rank continues from the
  same state;
- each rank draws its training batches from its own shard of the cells (dealt by a seeded permutation), with generators
  seeded by ``(seed, rank)``, and takes ``ceil(steps / world_size)`` steps: the same number of cells seen
  per stage as one process, in fewer steps;
- the final embedding is computed by shards and gathered on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from sccluster import _distributed as distributed
from sccluster._distributed import Context

T = TypeVar("T")


def once(ctx: Context, rng: np.random.Generator, compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, its result broadcast; every rank's ``rng`` left where rank 0's is."""
    if not ctx.distributed:
        return compute()
    result = compute() if ctx.is_main else None
    result, state = distributed.broadcast((result, rng.bit_generator.state) if ctx.is_main else None, ctx)
    rng.bit_generator.state = state
    return result


def sync_module(ctx: Context, module: Any) -> None:
    """Give every rank rank 0's weights and buffers."""
    if ctx.distributed:
        state = distributed.broadcast(
            {k: v.detach().cpu() for k, v in module.state_dict().items()} if ctx.is_main else None, ctx
        )
        module.load_state_dict(state)


def data_generators(ctx: Context, seed: int, generators: tuple[Any, Any]) -> tuple[Any, Any]:
    """The generators of this rank's training batches: the fit's own on one process, ``(seed, rank)`` else."""
    if not ctx.distributed:
        return generators
    import torch

    rng = np.random.default_rng([seed, ctx.rank, 2])
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return rng, gen


def shard_indices(ctx: Context, seed: int, n: int, indices: np.ndarray | None) -> np.ndarray | None:
    """The cells of ``indices`` (all ``n`` when ``None``) that this rank trains on, sorted.

    The cells are dealt out by a seeded permutation shared by the ranks (as a distributed sampler does),
    not in file order: files are often sorted by sample or type, and a rank holding a few types only
    would bias every per-batch statistic (the clustering target's column sums, Sinkhorn's marginals).
    """
    if not ctx.distributed:
        return indices
    cells = np.arange(n) if indices is None else np.asarray(indices)
    dealt = np.random.default_rng([seed, 3]).permutation(cells)
    return np.sort(dealt[distributed.shard(len(cells), ctx)])


def steps(ctx: Context, n_steps: int) -> int:
    """Steps each rank takes for a stage of ``n_steps`` single-process steps."""
    return math.ceil(n_steps / ctx.world_size) if n_steps > 0 else n_steps


def sharded(ctx: Context, n: int, compute: Callable[[np.ndarray | None], tuple]) -> tuple:
    """``compute(indices)`` on this rank's block of the ``n`` cells, the blocks gathered on every rank.

    ``compute`` returns a tuple of arrays (or ``None``) with one row per cell of ``indices`` (all cells
    for ``None``).
    """
    if not ctx.distributed:
        return compute(None)
    block = np.arange(n)[distributed.shard(n, ctx)]
    return tuple(distributed.gather_rows(part, ctx) for part in compute(block))
