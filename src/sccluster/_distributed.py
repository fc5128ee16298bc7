"""Data-parallel runs with ``torch.distributed``: the process group, and the few collectives a fit needs.

A fit runs data-parallel when it is started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) or when
the caller has already initialised a process group. Every rank runs the same code on the same input; what
is global (the scaler's statistics, the initial centres, the clustering target's proportions) is computed
once on rank 0 and broadcast, or all-reduced; each rank trains on its own shard of the cells; the labels
are gathered so that every rank ends with the whole result, and rank 0 writes it.

Outside such a run every function here is a no-op on one process (``world_size == 1``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from sccluster._errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """Where this process stands in a run: its ``rank`` among ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes."""
        return self.rank == 0


def _dist():
    import torch.distributed as dist

    return dist


def current() -> Context:
    """The run this process belongs to (one process when no process group is initialised)."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size())
    return Context()


def launched_by_torchrun() -> bool:
    """``True`` when the environment describes a run of several processes (``torchrun`` sets it)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device):
    """Join the process group of a ``torchrun`` launch (if any, and not joined yet).

    ``device`` is the resolved :class:`torch.device`: the backend is ``nccl`` on GPUs and ``gloo`` on CPU,
    and on GPUs each process takes the GPU of its ``LOCAL_RANK``. Returns the context and the device this
    process trains on.
    """
    dist = _dist()
    if not (dist.is_available() and (dist.is_initialized() or launched_by_torchrun())):
        return Context(), device
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend)
        except (RuntimeError, ValueError) as exc:
            msg = (
                f"cannot join the torchrun process group ({backend}: {str(exc).splitlines()[0]}); "
                "check MASTER_ADDR, MASTER_PORT and the --rdzv options of torchrun"
            )
            raise InputError(msg) from None
        logger.info(
            "joined a %s process group: rank %d of %d", backend, dist.get_rank(), dist.get_world_size()
        )
    ctx = current()
    if device.type == "cuda":
        import torch

        local = int(os.environ.get("LOCAL_RANK", ctx.rank % max(1, torch.cuda.device_count())))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return ctx, device


def broadcast(obj: Any, ctx: Context) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; for small objects: statistics, centres)."""
    if not ctx.distributed:
        return obj
    box = [obj if ctx.is_main else None]
    _dist().broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(tensor, ctx: Context | None = None):
    """The mean of ``tensor`` over the ranks (a new tensor; ``tensor`` itself on one process)."""
    ctx = current() if ctx is None else ctx
    if not ctx.distributed:
        return tensor
    out = tensor.detach().clone()
    _dist().all_reduce(out)
    return out / ctx.world_size


def shard(n: int, ctx: Context) -> slice:
    """The contiguous block of ``range(n)`` this rank handles (blocks differ in size by at most one)."""
    bounds = np.linspace(0, n, ctx.world_size + 1).round().astype(int)
    return slice(int(bounds[ctx.rank]), int(bounds[ctx.rank + 1]))


def gather_rows(block: np.ndarray | None, ctx: Context) -> np.ndarray | None:
    """The blocks of all ranks, concatenated in rank order, on every rank (``None`` stays ``None``)."""
    if not ctx.distributed or block is None:
        return block
    parts: list[Any] = [None] * ctx.world_size
    _dist().all_gather_object(parts, block)
    return np.concatenate(parts)


def shutdown(*, wait: bool = True) -> None:
    """Leave the process group, if this process joined one.

    With ``wait`` (a run that finished normally) the ranks first meet at a barrier, so that none tears
    its connections down while another still writes or communicates (a gloo rank that left early was
    seen to abort). After an error or an interrupt the ranks may stand in different collectives, so
    ``wait=False`` leaves at once.
    """
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
