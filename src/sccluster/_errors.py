"""Errors that carry a one-line, user-facing message."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the message says in one line what is wrong and what to do.

    The CLI turns this into ``error: <message>`` on stderr and exit code 2, without a traceback.
    """


class TrainingError(RuntimeError):
    """Training could not produce a usable model (for example the loss diverged)."""
