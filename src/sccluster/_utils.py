"""Small shared helpers: seeds, devices, atomic writes."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import InputError

logger = logging.getLogger(__name__)

#: Largest seed accepted (numpy's legacy seeds and scikit-learn take 32-bit unsigned integers).
MAX_SEED = 2**32 - 1


def resolve_seed(random_state: int | None) -> int:
    """Turn ``random_state`` into a concrete integer seed (``None`` draws one from the OS)."""
    if random_state is None:
        entropy = np.random.SeedSequence().entropy
        assert isinstance(entropy, int)  # drawn from the OS when not given: an int
        return int(entropy % (2**31))
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(random_state, (int, np.integer)):
        msg = f"random_state must be an integer or None, got {random_state!r}"
        raise InputError(msg)
    if not 0 <= int(random_state) <= MAX_SEED:
        msg = f"random_state must be between 0 and {MAX_SEED}, got {random_state!r}"
        raise InputError(msg)
    return int(random_state)


def make_generators(seed: int):
    """Return a numpy Generator and a CPU torch Generator, both seeded from ``seed``."""
    import torch

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    return rng, gen


@contextlib.contextmanager
def seeded_torch(seed: int, device=None) -> Iterator[None]:
    """Seed torch's global generators inside the block and restore the caller's states after it.

    The CPU generator is always forked and seeded; the CUDA generators only when ``device`` is a
    CUDA device, the one case where a model draws from them (dropout on the GPU). So a fit is
    reproducible from its seed and leaves the caller's own random streams where they were.
    """
    import torch

    cuda = device is not None and torch.device(device).type == "cuda"
    devices = list(range(torch.cuda.device_count())) if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed_all(seed)
        yield


def resolve_device(device: str = "auto"):
    """Resolve ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:N"``/``"mps"`` to a :class:`torch.device`."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        msg = f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'"
        raise InputError(msg) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = f"device {device!r} was requested but CUDA is not available; use device='cpu' or 'auto'"
        raise InputError(msg)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        msg = f"device {device!r} was requested but this machine has {torch.cuda.device_count()} CUDA device(s); use 'cuda' or 'cuda:0'"
        raise InputError(msg)
    return dev


def check_output_path(path: str | os.PathLike, *, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Check that ``path`` can be written and is not one of ``inputs``; return it as a Path."""
    out = Path(path).expanduser()
    for inp in inputs:
        if inp is None:
            continue
        inp_path = Path(inp).expanduser()
        same = out.resolve() == inp_path.resolve()
        if not same and out.exists() and inp_path.exists():
            same = os.path.samefile(out, inp_path)
        if same:
            msg = f"output path {str(out)!r} is the input file; choose a different output path"
            raise InputError(msg)
    parent = out.parent if str(out.parent) else Path(".")
    if out.exists() and out.is_dir():
        msg = f"output path {str(out)!r} is a directory; give a file name"
        raise InputError(msg)
    if not parent.exists():
        msg = f"output folder {str(parent)!r} does not exist; create it or choose another output path"
        raise InputError(msg)
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        msg = f"output path {str(out)!r} is not writable; choose a folder you can write to"
        raise InputError(msg)
    return out


def _host_tag() -> str:
    import hashlib
    import socket

    return hashlib.md5(socket.gethostname().encode(), usedforsecurity=False).hexdigest()[:8]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def temp_parts(path: str | os.PathLike) -> list[Path]:
    """Temporary files of :func:`atomic_path` beside ``path`` (``.{name}.{pid}-{host}.*.part``), any writer."""
    final = Path(path)
    folder = final.parent if str(final.parent) else Path(".")
    return sorted(folder.glob(f".{glob.escape(final.name)}.*.part"))


def is_stale_part(part: Path, name: str) -> bool:
    """Whether ``part`` is the temporary file of a write to ``name`` whose process ended (this machine).

    Only files named by :func:`atomic_path` qualify; the writer's process id and machine are in the name,
    so a write still running (here or on another machine sharing the folder) is never taken for stale.
    """
    match = re.fullmatch(rf"\.{re.escape(name)}\.(\d+)-([0-9a-f]{{8}})\.[^/]+\.part", part.name)
    if match is None or os.name != "posix" or match.group(2) != _host_tag():
        return False
    return not _pid_alive(int(match.group(1)))


def remove_stale_parts(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of earlier, killed writes to ``path`` (:func:`is_stale_part`); return them."""
    final = Path(path)
    removed = []
    for part in temp_parts(final):
        if is_stale_part(part, final.name):
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
                removed.append(part)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An interrupted or failed write leaves no partial file at ``path``. The temporary file is named
    ``.{name}.{pid}-{host}.XXXXXXXX.part``; those of earlier writes to ``path`` whose process is gone
    (killed with SIGKILL, a power cut) are removed first. A SIGINT/SIGTERM received under the CLI's
    handlers (:mod:`sccluster._signals`) stops the rename even when a library swallowed its exception.
    """
    from ._signals import check_interrupted

    final = Path(path)
    for part in remove_stale_parts(final):
        logger.info("removed %s, the temporary file of an earlier interrupted write", part)
    prefix = f".{final.name}.{os.getpid()}-{_host_tag()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=final.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        # mkstemp creates the file 0600; give the output the usual permissions (0666 minus umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        yield tmp_path
        check_interrupted()
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def prefer_blocking_numba_threads() -> None:
    """Use numba's ``workqueue`` threading layer for the numba-parallel code we call (pynndescent, umap).

    numba's default layer is OpenMP when it is available; after a parallel pynndescent / umap call its
    worker threads keep spinning, and on a machine with few cores they steal CPU from the torch
    training loop that follows (measured: a single-threaded torch loop ran 4x slower after one
    ``sc.pp.neighbors`` call). ``workqueue`` threads sleep while idle. Nothing changes when the user
    chose a layer (``NUMBA_THREADING_LAYER``) or when numba already started its thread pool.
    """
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return
    import numba
    from numba.np.ufunc import parallel

    if not getattr(parallel, "_is_initialized", False):
        # numba.config creates its options at import time (from the environment), invisible to mypy
        numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]


#: Seconds between progress-bar updates when stderr is a file or a pipe (a terminal gets tqdm's default).
PIPE_UPDATE_S = 30.0


def progress(iterable=None, **kwargs):
    """A tqdm progress bar on stderr, shown at verbosity >= 2 (``settings.show_progress``).

    On a terminal it updates as tqdm does. When stderr is a file or a pipe it redraws at most every
    :data:`PIPE_UPDATE_S` seconds, in plain ASCII, so a log file gets a few lines instead of thousands
    of carriage-return updates. Keyword arguments go to ``tqdm``.
    """
    import sys

    from tqdm.auto import tqdm

    from ._settings import settings

    kwargs.setdefault("disable", False)
    kwargs["disable"] = kwargs["disable"] or not settings.show_progress
    isatty = getattr(sys.stderr, "isatty", None)
    if not (isatty is not None and isatty()):
        kwargs.setdefault("mininterval", PIPE_UPDATE_S)
        kwargs.setdefault("maxinterval", max(PIPE_UPDATE_S, kwargs["mininterval"]))
        kwargs.setdefault("ascii", True)
    return tqdm(iterable, **kwargs)


def load_torch_file(path: str | os.PathLike, kind: str, remedy: str) -> Any:
    """The object in a file written with ``torch.save`` (unpickled: load only files you trust).

    :class:`InputError` in one line when the file is missing, a folder, or not readable by ``torch.load``;
    ``kind`` names the file in the message ("model file") and ``remedy`` says what to do when it is unreadable.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        msg = f"{kind} {str(path)!r} {what}; check the path"
        raise InputError(msg)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not such a file"
        msg = f"{str(path)!r} is not a readable sccluster {kind} ({type(err).__name__}); {remedy}"
        raise InputError(msg) from None
