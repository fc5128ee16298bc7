"""Package-wide settings: dataset directory, verbosity and logging."""

from __future__ import annotations

import logging
import os
from pathlib import Path

_LOGGER_NAME = "sccluster"


def _default_datasetdir() -> Path:
    env = os.environ.get("SCCLUSTER_DATASETDIR")
    if env:
        return Path(env)
    # The benchmark data live in ../shared/data beside the project root.
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data"
        if (parent / "pyproject.toml").exists() and candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data"


class Settings:
    """Global settings of sccluster.

    Attributes
    ----------
    datasetdir
        Folder holding the benchmark ``.h5ad`` files (default ``../shared/data`` next to the
        project root, or ``$SCCLUSTER_DATASETDIR``).
    verbosity
        0 = errors only, 1 = warnings, 2 = info (default), 3 = debug: the level of the ``sccluster``
        logger. Progress bars show at >= 2.

    Logging: like any library, sccluster only adds a :class:`logging.NullHandler` to its logger and
    leaves propagation on, so its messages reach the handlers the application configures (for example
    ``logging.basicConfig(level="INFO")``, or pytest's ``caplog``). The ``sccluster`` command line
    configures its own handler (:func:`sccluster.cli.main`).
    """

    def __init__(self) -> None:
        self.datasetdir: Path = _default_datasetdir()
        self._verbosity = 2
        self._configure()

    @property
    def verbosity(self) -> int:
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: int) -> None:
        self._verbosity = int(value)
        self._configure()

    @property
    def show_progress(self) -> bool:
        """Whether tqdm progress bars are shown."""
        return self._verbosity >= 2

    def _configure(self) -> None:
        level = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}.get(self._verbosity, logging.DEBUG)
        logger = logging.getLogger(_LOGGER_NAME)
        logger.setLevel(level)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())


settings = Settings()
