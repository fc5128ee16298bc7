"""Interrupts of the command line (SIGINT, SIGTERM): one exception, one flag, handlers installed by the CLI.

:func:`handle_signals` (used by :func:`sccluster.cli.main`) turns SIGINT and SIGTERM into
:class:`Interrupted`, a :class:`KeyboardInterrupt`, so ``finally`` blocks run and temporary files are
removed on both signals (a plain SIGTERM would kill the process on the spot). A signal is also recorded:
a third-party library may swallow the exception (h5py reports it as "Exception ignored" and goes on), so
:func:`check_interrupted` raises it again before an output file is put in place
(:func:`sccluster._utils.atomic_path`). Outside the CLI nothing is installed and the checks do nothing.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

#: Signals turned into :class:`Interrupted` by :func:`handle_signals`.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The process received ``signum`` (SIGINT or SIGTERM); exit code ``128 + signum`` (130, 143)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    received: int | None = None  # the first signal received while the handlers are installed
    raising: bool = True  # False once the CLI handles the interrupt: later signals must not cut its clean-up


_state = _State()


def received() -> int | None:
    """The first SIGINT/SIGTERM received under :func:`handle_signals`, else None."""
    return _state.received


def check_interrupted() -> None:
    """Raise :class:`Interrupted` when a signal was received (even if its first exception was swallowed)."""
    if _state.received is not None and _state.raising:
        raise Interrupted(_state.received)


def stop_raising() -> None:
    """From now on, signals are only recorded: the interrupt is being handled."""
    _state.raising = False


def _handler(signum: int, frame) -> None:
    if _state.received is None:
        _state.received = signum
    if _state.raising:
        raise Interrupted(signum)


def _unraisable(default):
    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            return  # recorded by the handler; raised again at the next check
        default(unraisable)

    return hook


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Inside the block, SIGINT and SIGTERM raise :class:`Interrupted`; the previous handlers come back after it.

    Does nothing outside the main thread (where Python cannot install signal handlers).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    saved_hook = sys.unraisablehook
    _state.received, _state.raising = None, True
    try:
        for sig in SIGNALS:
            signal.signal(sig, _handler)
        sys.unraisablehook = _unraisable(saved_hook)
        yield
    finally:
        _state.raising = False
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        sys.unraisablehook = saved_hook
        _state.received, _state.raising = None, True
