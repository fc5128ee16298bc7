"""``--param NAME=VALUE`` of the command line: parsing, and every check that needs no data.

:func:`check_model_params` runs before any file is read: unknown names, values of the wrong type (from
the model's signature), the model's own checks of its hyperparameters when it has a hook for them
(methods ``validate_params`` / ``check_params`` / ``_check_params``, or a module function
``check_params(model)``), and ``device``. Each message says what is wrong and what to do.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union

from ._errors import InputError

#: Hyperparameters set by their own options, not by ``--param``.
RESERVED_PARAMS = {
    "n_clusters": "--n-clusters",
    "random_state": "--seed",
    "n_top_genes": "--n-top-genes",
    "batch_key": "--batch-key",
}
#: Methods of a model that check its hyperparameters without data (the first one found is called).
_HOOKS = ("validate_params", "check_params", "_check_params")


def seed_arg(text: str) -> int:
    """``--seed``: an integer the library accepts as a seed (0 to :data:`~sccluster._utils.MAX_SEED`)."""
    from ._utils import MAX_SEED, resolve_seed

    try:
        return resolve_seed(int(text))  # the library's own range check (InputError is a ValueError)
    except ValueError:
        msg = f"expected an integer from 0 to {MAX_SEED}, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def positive_int_arg(text: str) -> int:
    """An option that takes a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def parse_value(text: str) -> Any:
    """Parse a ``--param`` value: bool, None, int, float, else the string itself."""
    low = text.strip().lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_params(items: Sequence[str], reserved: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Turn ``["lr=1e-3", "max_epochs=5"]`` into ``{"lr": 0.001, "max_epochs": 5}``.

    ``reserved`` maps the names set by their own options to those options (default: those of
    ``sccluster cluster``, :data:`RESERVED_PARAMS`).
    """
    reserved = RESERVED_PARAMS if reserved is None else reserved
    params: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name.isidentifier():
            msg = f"--param expects NAME=VALUE, got {item!r}; write it as NAME=VALUE (for example --param max_epochs=50)"
            raise InputError(msg)
        if name in reserved:
            msg = f"set {name} with {reserved[name]}, not with --param; use {reserved[name]} instead"
            raise InputError(msg)
        params[name] = parse_value(value)
    return params


def unknown_param_error(unknown: Sequence[str], valid: Sequence[str], method: str) -> InputError:
    """The one-line error for ``--param`` names the method does not take, with the names it does."""
    names = sorted(set(valid) - set(RESERVED_PARAMS))
    hints = [m for name in unknown for m in difflib.get_close_matches(name, names, n=1)]
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    listed = ", ".join(names) or "none"
    msg = f"unknown --param {', '.join(unknown)} for method {method!r}{hint}; use one of its parameters: {listed}"
    return InputError(msg)


# --------------------------------------------------------------------------- types from the signature
def _accepts(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` fits the annotation ``hint``; None when the hint is not understood."""
    if hint is Any or hint is inspect.Parameter.empty:
        return None
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _accepts(value, typing.get_args(hint)[0])
    if origin in (Union, types.UnionType):
        answers = [_accepts(value, arg) for arg in typing.get_args(hint)]
        return True if any(answers) else None if None in answers else False
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return None


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _describe(typing.get_args(hint)[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a text", type(None): "none"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _hints(cls: type[Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations: no type check, the model still checks
        return {}


def _defaults(cls: type[Any]) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters
    return {name: p.default for name, p in params.items() if p.default is not inspect.Parameter.empty}


# --------------------------------------------------------------------------- the check
def _hook(model) -> Callable[[], Any] | None:
    for name in _HOOKS:
        method = getattr(model, name, None)
        if callable(method):
            try:
                inspect.signature(method).bind()
            except (TypeError, ValueError):
                continue
            return method
    module_check = getattr(sys.modules.get(type(model).__module__), "check_params", None)
    if callable(module_check):
        return lambda: module_check(model)
    return None


def _option(name: str, value: Any) -> str:
    return f"--param {name}={value}"


def _remedy(message: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """``message`` of a model's check, with the ``--param`` values it is about and what to do."""
    named = [n for n in params if re.search(rf"\b{re.escape(n)}\b", message)]
    if not named:
        return (
            f"{message} (given {', '.join(_option(n, v) for n, v in params.items())})" if params else message
        )
    given = ", ".join(_option(n, params[n]) for n in named)
    default = "; ".join(f"{n} defaults to {defaults[n]!r}" for n in named if n in defaults)
    return f"{given}: {message}; change the value or leave the option out" + (
        f" ({default})" if default else ""
    )


def check_model_params(
    cls: type[Any], method: str, params: Mapping[str, Any], *, fixed: Mapping[str, Any] | None = None
) -> None:
    """Validate ``--param`` values for the model class ``cls`` before any data is read.

    Parameters
    ----------
    cls
        The model class of ``method``.
    method
        Its name, for the messages.
    params
        The ``--param`` values, by name.
    fixed
        Hyperparameters the command sets itself (``n_clusters`` of ``--n-clusters``, ...): passed to
        the model so that checks between parameters see them.

    Raises
    ------
    InputError
        An unknown name, a value of the wrong type or out of range, or an unusable ``device``.
    """
    names = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise unknown_param_error(unknown, names, method)
    hints, defaults = _hints(cls), _defaults(cls)
    kwargs = {**{k: v for k, v in (fixed or {}).items() if k in names}, **params}
    try:  # the model's own checks first: their messages give the allowed range, not only the type
        model = cls(**kwargs)
        hook = _hook(model)
        if hook is not None:
            hook()
        if "device" in params:
            from ._utils import resolve_device

            resolve_device(params["device"])
    except InputError as err:
        raise InputError(_remedy(" ".join(str(err).split()), params, defaults)) from None
    except (TypeError, ValueError) as err:  # a check tripped over a value of the wrong type
        _check_types(params, hints, defaults, method)
        msg = f"--param values rejected by method {method!r} ({' '.join(str(err).split())}); change or remove them"
        raise InputError(msg) from None
    _check_types(params, hints, defaults, method)  # what the model does not check before fitting


def _check_types(
    params: Mapping[str, Any], hints: Mapping[str, Any], defaults: Mapping[str, Any], method: str
) -> None:
    for name, value in params.items():
        if name in hints and _accepts(value, hints[name]) is False:
            default = f" ({name} defaults to {defaults[name]!r})" if name in defaults else ""
            msg = (
                f"{_option(name, value)}: {name} must be {_describe(hints[name])} for method {method!r}, got "
                f"{value!r}; change the value or leave the option out{default}"
            )
            raise InputError(msg)
