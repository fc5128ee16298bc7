"""Checkpoints of a training run: the state of each phase, saved atomically, and resuming from it.

A run is a sequence of :class:`~sccluster.train.Phase` objects run by one :class:`~sccluster.train.Trainer`.
The state of phase ``i`` goes to one file, ``phase{i}-{name}.pt`` in the run's folder, rewritten every
``every`` optimiser steps and at the end of the phase (then marked complete). Each file holds the module's
weights, the optimiser, the clustering-target snapshot, the early-stopping state, the history rows, the
stateful objects of the phase (the target's running cluster proportions) and the random states: the
run's numpy and torch generators and torch's global generator (dropout).

Resuming runs the fit from the start with the same seed; every phase is then handed its file:

- a complete phase is not trained: its end state is loaded (weights, optimiser, random states, history),
  so what the fit does between phases (embedding, centre initialisation) sees what it saw the first time;
- the phase that was interrupted draws again the mini-batches of the steps already taken (cheap: no
  forward or backward pass), which leaves its batch iterator and the run's generators where they were;
  the generators are then compared with the saved ones (a mismatch means the data or the code changed)
  and the rest of the state is loaded.

So a resumed run gives the labels of an uninterrupted one on the same machine. A folder written by
another run (another dataset, model, hyperparameters, seed, package version or world size) is refused.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sccluster._errors import InputError
from sccluster._utils import atomic_path

logger = logging.getLogger(__name__)

#: Version of the file layout; files of another version are refused.
FORMAT = 1
SUFFIX = ".pt"


class Checkpointer:
    """Saves and restores the phases of one training run in ``directory``.

    Parameters
    ----------
    directory
        The run's folder (created if missing). Holds one file per phase and nothing else.
    fingerprint
        What identifies the run (data, model, hyperparameters, seed, version, world size): a mapping of
        names to values that compare with ``==``. A file whose fingerprint differs is refused.
    every
        Optimiser steps between saves within a phase (``>= 1``); a phase is also saved when it ends.
    resume
        ``False``: the folder must hold no checkpoint (:class:`InputError` otherwise, so that a run never
        overwrites another's state by accident). ``True``: continue from the files found; with none, the
        run starts from the beginning.
    generators
        The run's own generators (numpy, torch) whose states are saved, restored and checked.
    suffix
        Added to the file names before ``.pt``: each rank of a data-parallel run keeps its own files
        (``".rank1"``), since the random streams differ between ranks.
    """

    def __init__(
        self,
        directory: str | Path,
        fingerprint: Mapping[str, Any],
        *,
        every: int,
        resume: bool,
        generators: tuple[np.random.Generator, torch.Generator],
        suffix: str = "",
    ) -> None:
        self.directory = Path(directory)
        self.fingerprint = dict(fingerprint)
        self.every = int(every)
        self.resume = bool(resume)
        self.rng, self.gen = generators
        self.suffix = suffix
        if self.every < 1:
            msg = f"checkpoint_every must be a positive number of steps, got {every!r}"
            raise InputError(msg)
        if self.directory.exists() and not self.directory.is_dir():
            msg = f"checkpoint folder {str(self.directory)!r} is a file; give a folder"
            raise InputError(msg)
        found = self.files()
        if found and not self.resume:
            msg = (
                f"checkpoint folder {str(self.directory)!r} already holds a run's checkpoints; pass "
                "resume=True (--resume) to continue it, or remove it or choose another folder"
            )
            raise InputError(msg)
        if self.resume:
            if found:
                self._check(self._read(found[0]), found[0])  # another run's folder: refused before any work
                logger.info("resuming from %d checkpoint file(s) in %s", len(found), self.directory)
            else:
                logger.info("no checkpoint in %s yet: starting from the beginning", self.directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create the checkpoint folder {str(self.directory)!r} ({exc.strerror}); choose another"
            raise InputError(msg) from None

    def files(self) -> list[Path]:
        """The checkpoint files in the folder."""
        return checkpoint_files(self.directory)

    def path(self, index: int, name: str) -> Path:
        """The file of phase ``index`` (0-based, in the order the trainer ran them) named ``name``."""
        return self.directory / f"phase{index}-{name}{self.suffix}{SUFFIX}"

    # ------------------------------------------------------------------ reading
    def load(self, index: int, name: str) -> dict[str, Any] | None:
        """The saved state of a phase, ``None`` when there is none (or when not resuming).

        Raises :class:`InputError` when the file is unreadable or belongs to another run.
        """
        path = self.path(index, name)
        if not self.resume or not path.is_file():
            return None
        state = self._read(path)
        self._check(state, path)
        return state

    @staticmethod
    def _read(path: Path) -> Any:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 (any failure to unpickle is a damaged file)
            msg = f"checkpoint {str(path)!r} cannot be read ({type(exc).__name__}); remove the folder and start again"
            raise InputError(msg) from None

    def _check(self, state: Any, path: Path) -> None:
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            msg = f"checkpoint {str(path)!r} is not a checkpoint of this sccluster version; remove the folder and start again"
            raise InputError(msg)
        saved = state.get("fingerprint", {})
        differs = sorted(
            k for k in set(saved) | set(self.fingerprint) if saved.get(k) != self.fingerprint.get(k)
        )
        if differs:
            msg = (
                f"checkpoint folder {str(self.directory)!r} holds another run (different {', '.join(differs)}); "
                "remove it or choose another checkpoint folder"
            )
            raise InputError(msg)

    # ------------------------------------------------------------------ writing
    def save(self, index: int, name: str, state: dict[str, Any]) -> None:
        """Write the state of a phase atomically (the previous file stays whole until the new one is)."""
        state = {"format": FORMAT, "fingerprint": self.fingerprint, **state, "random": self.random_state()}
        path = self.path(index, name)
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        logger.debug("checkpoint: %s step %d -> %s", name, state["step"], path)

    # ------------------------------------------------------------------ random states
    def random_state(self) -> dict[str, Any]:
        """The states of the run's generators and of torch's global ones."""
        out: dict[str, Any] = {
            "numpy": copy.deepcopy(self.rng.bit_generator.state),
            "torch": self.gen.get_state(),
            "torch_global": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["cuda"] = torch.cuda.get_rng_state_all()
        return out

    def set_random_state(self, saved: Mapping[str, Any], *, run_generators: bool = True) -> None:
        """Restore the saved states (the run's own generators only when ``run_generators``)."""
        if run_generators:
            self.rng.bit_generator.state = saved["numpy"]
            self.gen.set_state(saved["torch"])
        torch.set_rng_state(saved["torch_global"])
        if "cuda" in saved and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda"])

    def check_streams(self, saved: Mapping[str, Any], path: Path) -> None:
        """After the replay of an interrupted phase's batches, the run's generators must be where they were."""
        same_numpy = _same(self.rng.bit_generator.state, saved["numpy"])
        same_torch = torch.equal(self.gen.get_state(), saved["torch"])
        if not (same_numpy and same_torch):
            msg = (
                f"checkpoint {str(path)!r} does not match this run (its random streams differ: the data or the "
                "code changed since it was written); remove the folder and start again"
            )
            raise InputError(msg)


def checkpoint_files(directory: str | Path) -> list[Path]:
    """The checkpoint files in a run's folder (of every rank), sorted; none when the folder is missing."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"phase*{SUFFIX}") if p.is_file())


def _same(a: Any, b: Any) -> bool:
    """Deep equality of generator states (dicts of ints, strings and numpy arrays)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    return a == b
