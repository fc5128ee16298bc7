"""Checks of hyperparameter values, shared by the models: one :class:`InputError` line per bad value.

numpy scalars (``np.float32(0.9)``, ``np.int64(5)``) are accepted wherever Python numbers are; booleans
are never taken for numbers, and flags must be real booleans (``"no"`` is not False).
"""

from __future__ import annotations

import numpy as np

from sccluster._errors import InputError


def check_number(
    name: str,
    value,
    lo: float,
    hi: float | None = None,
    *,
    integer: bool = False,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Raise :class:`InputError` unless ``value`` is a number (an integer when ``integer``) in range.

    The range is ``lo <= value <= hi``; ``lo_open`` / ``hi_open`` make either end strict and
    ``hi=None`` leaves it unbounded above (NaN and infinity are always refused).
    """
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, kinds)
    if ok:
        above = value > lo if lo_open else value >= lo
        below = hi is None or (value < hi if hi_open else value <= hi)
        ok = bool(above and below and np.isfinite(value))
    if not ok:
        kind = "an integer" if integer else "a number"
        bounds = f"{'>' if lo_open else '>='} {lo}"
        if hi is not None:
            bounds += f" and {'<' if hi_open else '<='} {hi}"
        msg = f"{name} must be {kind} {bounds}, got {value!r}"
        raise InputError(msg)


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        msg = f"{name} must be one of {choices}, got {value!r}"
        raise InputError(msg)


def check_flag(name: str, value) -> None:
    """Raise :class:`InputError` unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, (bool, np.bool_)):
        msg = f"{name} must be True or False, got {value!r}"
        raise InputError(msg)
