"""Hyperparameters as configuration objects: per-field constraints, one validator, flat estimator keywords.

A model's configuration is a frozen dataclass of groups (architecture, optimisation, clustering head,
...), each a frozen dataclass of fields. A field's type says what it accepts, scikit-learn
``_parameter_constraints`` style but next to the field:

- ``bool``: exactly ``True`` or ``False``;
- ``Literal["a", "b"]``: one of those strings;
- ``Annotated[T, constraint, ...]``: every constraint is called as ``constraint(name, value)`` and raises
  :class:`InputError` (one line naming the parameter and what it accepts); ``None`` passes when ``T``
  allows it. :class:`Interval` covers numeric ranges;
- anything else is not checked here (for example ``batch_key``, checked against the data).

Each group documents its fields in a numpy ``Parameters`` section. :func:`config_params` gives an
estimator class the flat scikit-learn keyword arguments of its configuration (``__init__`` and its
signature, so ``get_params``/``set_params`` and clone work) and the parameter documentation. A new
hyperparameter is therefore one field line and one docstring entry in its group.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from ._params import check_choice, check_flag, check_number

__all__ = ["Annotated", "Interval", "Literal", "ModelConfig", "config_params", "validate"]


@dataclass(frozen=True)
class Interval:
    """Numbers ``lo <= value <= hi`` (``lo_open``/``hi_open``: strict; ``hi=None``: unbounded).

    ``integer``: integers only (numpy integers too; never booleans). NaN and infinity are refused.
    """

    lo: float
    hi: float | None = None
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False

    def __call__(self, name: str, value: Any) -> None:
        check_number(
            name, value, self.lo, self.hi, integer=self.integer, lo_open=self.lo_open, hi_open=self.hi_open
        )


#: Field types shared by the models' configs: an integer >= 1, a number >= 0.
PositiveInt = Annotated[int, Interval(1, integer=True)]
NonNegative = Annotated[float, Interval(0.0)]


def _allows_none(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)


def check_value(name: str, value: Any, hint: Any) -> None:
    """Raise :class:`InputError` unless ``value`` satisfies the field type ``hint`` (module docstring)."""
    if get_origin(hint) is Annotated:
        base, *constraints = get_args(hint)
        if value is None and _allows_none(base):
            return
        for constraint in constraints:
            constraint(name, value)
    elif hint is bool:
        check_flag(name, value)
    elif get_origin(hint) is Literal:
        check_choice(name, value, get_args(hint))


def validate(group: Any) -> None:
    """Check every field of a configuration group, then the group's cross-field ``check()`` if any."""
    hints = typing.get_type_hints(type(group), include_extras=True)
    for f in dataclasses.fields(group):
        check_value(f.name, getattr(group, f.name), hints[f.name])
    check = getattr(group, "check", None)
    if check is not None:
        check()


class ModelConfig:
    """Base of a model's configuration: a dataclass whose fields are groups of hyperparameters."""

    if TYPE_CHECKING:  # every subclass is a dataclass
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @classmethod
    def groups(cls) -> dict[str, type]:
        """Group name -> group class, in order."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def fields(cls) -> list[tuple[dataclasses.Field, Any]]:
        """Every hyperparameter ``(field, type)`` of every group, in order."""
        out = []
        for group in cls.groups().values():
            hints = typing.get_type_hints(group, include_extras=True)
            out += [(f, hints[f.name]) for f in dataclasses.fields(group)]
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any]):
        """The configuration of the flat ``params`` (extra keys ignored), validated (:class:`InputError`)."""
        groups = {}
        for name, group_cls in cls.groups().items():
            group = group_cls(**{f.name: params[f.name] for f in dataclasses.fields(group_cls)})
            validate(group)
            groups[name] = group
        return cls(**groups)


def _parameter_entries(doc: str | None) -> str:
    """The entries of the ``Parameters`` section of a numpy docstring, dedented."""
    text = inspect.cleandoc(doc or "")
    head = "Parameters\n----------\n"
    if head not in text:
        return ""
    body = text.split(head, 1)[1]
    lines = body.splitlines()
    for i in range(1, len(lines)):  # the section ends at the next "Title\n-----"
        if set(lines[i].strip()) == {"-"} and lines[i - 1].strip():
            lines = lines[: i - 1]
            break
    return "\n".join(lines).rstrip()


def _plain(hint: Any) -> Any:
    """``T`` of ``Annotated[T, ...]`` (the signature shows the type, the docstring the range)."""
    return get_args(hint)[0] if get_origin(hint) is Annotated else hint


#: Keyword arguments every configured estimator takes after its configuration.
RUN_PARAMETERS = (
    inspect.Parameter("random_state", inspect.Parameter.KEYWORD_ONLY, default=0, annotation="int | None"),
    inspect.Parameter("device", inspect.Parameter.KEYWORD_ONLY, default="auto", annotation="str"),
    inspect.Parameter(
        "checkpoint_dir", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="str | None"
    ),
    inspect.Parameter("checkpoint_every", inspect.Parameter.KEYWORD_ONLY, default=500, annotation="int"),
    inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default=False, annotation="bool"),
)

#: The documentation of the checkpoint parameters, in place of ``{checkpoints}`` in a class docstring.
CHECKPOINT_DOC = """\
checkpoint_dir
    Folder for checkpoints of the training state (``None``, default: none). The run's files go to a
    sub-folder named after the model and seed; they are rewritten atomically every
    ``checkpoint_every`` steps and at the end of each training phase, and kept after the fit.
checkpoint_every
    Optimiser steps between checkpoints within a phase (``>= 1``, default 500).
resume
    ``True``: continue from the checkpoints in ``checkpoint_dir`` (same data, hyperparameters, seed and
    version, else an error); the labels are those of an uninterrupted run. ``False`` (default): the
    run's checkpoint folder must not hold checkpoints yet."""


def config_params(config: type[ModelConfig]) -> Callable[[type[Any]], type[Any]]:
    """Class decorator: flat keyword arguments and their documentation from ``config``.

    The class gets ``__init__(self, n_clusters=None, *, <every field of config>, random_state=0,
    device="auto", checkpoint_dir=None, checkpoint_every=500, resume=False)``, which stores each argument unchanged under its name (scikit-learn style), with the
    matching ``__signature__``; its docstring's ``{config}`` line is replaced by the ``Parameters``
    entries of the groups, in order, and a ``{checkpoints}`` line by :data:`CHECKPOINT_DOC`;
    ``config_class`` is set to ``config``.
    """
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter(
            "n_clusters", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation="int | None"
        ),
    ]
    params += [
        inspect.Parameter(f.name, kw, default=f.default, annotation=_plain(hint))
        for f, hint in config.fields()
    ]
    params += list(RUN_PARAMETERS)
    signature = inspect.Signature(params)
    names = [p.name for p in params[2:]]

    def decorate(cls: type[Any]) -> type[Any]:
        base: type[Any] = cls.__mro__[1]
        base_init = base.__init__

        def __init__(self, n_clusters: int | None = None, **kwargs: Any) -> None:
            bound = signature.bind(self, n_clusters, **kwargs)
            bound.apply_defaults()
            base_init(self, n_clusters, random_state=bound.arguments["random_state"])
            for name in names:
                setattr(self, name, bound.arguments[name])

        __init__.__signature__ = signature  # type: ignore[attr-defined]
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = __init__
        cls.config_class = config
        entries = "\n".join(_parameter_entries(group.__doc__) for group in config.groups().values())
        doc = inspect.cleandoc(cls.__doc__ or "").replace("{config}", entries)
        cls.__doc__ = doc.replace("{checkpoints}", CHECKPOINT_DOC)
        return cls

    return decorate
