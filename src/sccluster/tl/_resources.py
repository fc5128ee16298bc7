"""Know before you run: the expected peak memory and time of a clustering, from the data's shape.

The cost model of each method is linear, fitted on the end-to-end runs of the scale study (read →
prepare → cluster → write of upsampled PBMCs at 10k, 100k and 1M cells, 2,000 genes, about 213 stored
counts per cell, on a 2-core machine; ``benchmarks/scale.py``, constants refitted with
``benchmarks/calibrate_resources.py``):

- peak memory (MB) = ``base_mb`` + ``mb_per_m_counts`` × stored counts / 10⁶ (stored counts drive
  the size of the sparse matrices, which prepare keeps twice: raw counts and log-normalised);
- time (s) = (``fixed_s`` + ``s_per_k_cells`` × cells / 10³) × the machine's speed factor, where the
  fixed part is the training budget (a fixed number of optimiser steps) and the resolution search,
  and the factor compares a short matrix benchmark on this machine with the calibration machine.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sccluster._errors import InputError
from sccluster._validation import is_disk_matrix

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CostModel:
    """Linear cost of one method (see the module docstring)."""

    base_mb: float
    mb_per_m_counts: float
    fixed_s: float
    s_per_k_cells: float


#: Cost models fitted on the scale study (``benchmarks/calibrate_resources.py`` prints these).
COSTS: dict[str, CostModel] = {
    "bgformer": CostModel(base_mb=711.0, mb_per_m_counts=15.5, fixed_s=206.0, s_per_k_cells=0.0887),
    "siamese": CostModel(base_mb=1044.0, mb_per_m_counts=24.8, fixed_s=110.0, s_per_k_cells=0.447),
    "leiden": CostModel(base_mb=875.0, mb_per_m_counts=42.2, fixed_s=53.0, s_per_k_cells=0.468),
    "kmeans": CostModel(base_mb=859.0, mb_per_m_counts=14.3, fixed_s=2.0, s_per_k_cells=0.118),
}
#: Seconds the speed benchmark (:func:`machine_speed`) takes on the calibration machine: one cold run in a
#: fresh process on the idle 2-core machine of the scale study (0.058-0.061 s over five processes).
REFERENCE_BENCHMARK_S = 0.06
#: Stored counts per cell of the scale study's data, used when the number of stored counts is unknown.
COUNTS_PER_CELL = 213.0


@dataclass
class ResourceEstimate:
    """Expected cost of clustering one dataset with one method on this machine."""

    method: str
    n_obs: int
    n_vars: int
    n_counts: int
    peak_memory_gb: float
    time_s: float
    available_memory_gb: float | None
    speed_factor: float

    @property
    def fits_in_memory(self) -> bool:
        """Whether the expected peak memory is below the memory available now (unknown: True)."""
        return self.available_memory_gb is None or self.peak_memory_gb <= self.available_memory_gb

    def __str__(self) -> str:
        avail = (
            "unknown" if self.available_memory_gb is None else f"{self.available_memory_gb:.1f} GB available"
        )
        return (
            f"{self.method}: {self.n_obs:,} cells x {self.n_vars:,} genes ({self.n_counts:,} stored counts); "
            f"expected peak memory {self.peak_memory_gb:.1f} GB ({avail}), "
            f"expected time {_duration(self.time_s)} (machine speed factor {self.speed_factor:.2f})"
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def available_memory_gb() -> float | None:
    """Memory available to a new process now (``MemAvailable`` of ``/proc/meminfo``), or ``None``."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024**2
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1024**3
    except (ValueError, OSError, AttributeError):
        return None


_SPEED: list[float] = []


def machine_speed() -> float:
    """Time of a short dense-matrix benchmark here over its time on the calibration machine (cached).

    Above 1 means slower than the calibration machine. The benchmark (about a quarter of a second
    there) multiplies 256 x 256 matrices in numpy, on as many threads as numpy uses.
    """
    if not _SPEED:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((256, 256), dtype=np.float32)
        start = time.perf_counter()
        for _ in range(200):
            a = np.tanh(a @ a.T / 16.0)
        _SPEED.append(max((time.perf_counter() - start) / REFERENCE_BENCHMARK_S, 0.05))
    return _SPEED[0]


def data_shape(data) -> tuple[int, int, int]:
    """``(cells, genes, stored counts)`` of an AnnData or of a file, reading no more than needed.

    ``.h5ad`` and 10x ``.h5`` files are read through their HDF5 headers (the matrix is not loaded);
    other formats are read whole. For a dense matrix the stored counts are its non-zero entries.
    """
    if isinstance(data, (str, os.PathLike)):
        shape = _file_shape(Path(data))
        if shape is not None:
            return shape
        from sccluster.io import read

        data = read(data)
    x = data.layers["counts"] if "counts" in data.layers else data.X
    if hasattr(x, "nnz"):
        return int(data.n_obs), int(data.n_vars), int(x.nnz)
    if is_disk_matrix(x):  # anndata's on-disk sparse dataset: the length of its stored values
        return int(data.n_obs), int(data.n_vars), int(x.group["indices"].shape[0])
    if x is None:
        return int(data.n_obs), int(data.n_vars), int(COUNTS_PER_CELL * data.n_obs)
    rows = np.asarray(x[: min(data.n_obs, 1000)])
    per_cell = float(np.count_nonzero(rows)) / max(rows.shape[0], 1)
    return int(data.n_obs), int(data.n_vars), int(per_cell * data.n_obs)


def _file_shape(path: Path) -> tuple[int, int, int] | None:
    """Shape and stored counts from the HDF5 header of an ``.h5ad`` or 10x ``.h5`` file, else ``None``."""
    import h5py

    if not path.is_file() or path.suffix not in (".h5ad", ".h5"):
        return None
    try:
        with h5py.File(path, "r") as f:
            if "matrix" in f and "shape" in f["matrix"]:  # 10x CellRanger: genes x cells
                genes, cells = (int(v) for v in f["matrix"]["shape"][:2])
                return cells, genes, int(f["matrix"]["data"].shape[0])
            x = f["X"] if "X" in f else None
            if isinstance(x, h5py.Group) and "data" in x:
                n_obs, n_vars = (int(v) for v in x.attrs["shape"])
                return n_obs, n_vars, int(x["data"].shape[0])
            if isinstance(x, h5py.Dataset) and x.ndim == 2:
                n_obs, n_vars = x.shape
                return int(n_obs), int(n_vars), int(COUNTS_PER_CELL * n_obs)
    except (OSError, KeyError, ValueError, TypeError):
        return None
    return None


def check_memory(estimate: ResourceEstimate) -> None:
    """Raise :class:`InputError` when ``estimate`` does not fit in the memory available now."""
    if not estimate.fits_in_memory:
        msg = (
            f"expected peak memory {estimate.peak_memory_gb:.1f} GB for {estimate.method} on {estimate.n_obs:,} cells is "
            f"more than the {estimate.available_memory_gb:.1f} GB available; free memory or use a larger machine "
            "(or pass --skip-memory-check to run anyway)"
        )
        raise InputError(msg)


def estimate_resources(data, method: str | None = None, *, n_seeds: int = 1) -> ResourceEstimate:
    """Expected peak memory and time of ``sccluster cluster`` on ``data`` with ``method``.

    Parameters
    ----------
    data
        An AnnData, or the path of a file (``.h5ad`` and 10x ``.h5`` are not loaded, only their headers).
    method
        A registered method name (``"bgformer"``, ``"siamese"``, ``"leiden"``, ``"kmeans"``); default ``None``:
        :data:`sccluster.models.DEFAULT_METHOD`, the method of ``tl.cluster`` and ``sccluster cluster``.
    n_seeds
        Fits of the consensus (``tl.cluster(n_seeds=...)``); they run one after the other, so the time
        scales with it and the memory does not.

    Returns
    -------
    :class:`ResourceEstimate`; ``str()`` of it is a one-line summary. The memory model was within a
    factor of 1.5 of every run of the scale study it was fitted on; expect more error for data far from
    it (very sparse or dense matrices, other numbers of genes or of training steps).
    """
    from sccluster.models import DEFAULT_METHOD, get_model_class

    method = DEFAULT_METHOD if method is None else method
    get_model_class(method)  # an unknown method is an InputError
    if method not in COSTS:
        msg = f"no cost model for method {method!r}; known: {', '.join(sorted(COSTS))}"
        raise InputError(msg)
    return estimate_for_shape(data_shape(data), method, n_seeds=n_seeds)


def estimate_for_shape(shape: tuple[int, int, int], method: str, *, n_seeds: int = 1) -> ResourceEstimate:
    """:func:`estimate_resources` for a known ``(cells, genes, stored counts)``."""
    n_obs, n_vars, n_counts = shape
    cost = COSTS[method]
    memory_mb = cost.base_mb + cost.mb_per_m_counts * n_counts / 1e6
    speed = machine_speed()
    seconds = n_seeds * (cost.fixed_s + cost.s_per_k_cells * n_obs / 1e3) * speed
    return ResourceEstimate(
        method=method, n_obs=n_obs, n_vars=n_vars, n_counts=n_counts, peak_memory_gb=memory_mb / 1024,
        time_s=seconds, available_memory_gb=available_memory_gb(), speed_factor=speed,
    )  # fmt: skip
