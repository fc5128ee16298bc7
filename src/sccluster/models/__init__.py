"""Clustering methods behind one surface: baselines and the deep models."""

from __future__ import annotations

from pathlib import Path

from .._errors import InputError
from ._base import MODEL_FORMAT, ClusterModel, read_model_file
from ._baselines import KMeansBaseline, LeidenBaseline
from ._bgformer import BGFormer
from ._siamese import SiameseClu
from ._stability import KChoice, ResolutionChoice, choose_k, choose_resolution

_REGISTRY: dict[str, type[ClusterModel]] = {
    LeidenBaseline.name: LeidenBaseline,
    KMeansBaseline.name: KMeansBaseline,
    BGFormer.name: BGFormer,
    SiameseClu.name: SiameseClu,
}

#: The method ``tl.cluster``, ``sccluster cluster`` and ``sccluster demo`` use unless told otherwise: the one
#: with the best mean ARI with k estimated over the benchmark datasets (docs/decisions/0012-default-method-bgformer.md).
DEFAULT_METHOD = "bgformer"


def available_methods() -> list[str]:
    """Names accepted by ``tl.cluster(method=...)`` and ``sccluster cluster --method``."""
    return sorted(_REGISTRY)


def load(path: str | Path, *, device: str = "auto") -> ClusterModel:
    """Load a model saved with ``model.save(path)``, whatever its class (read from the file).

    The file is unpickled, which can run code: load only model files you or a source you trust wrote.
    Raises :class:`InputError` for a missing file, a file that is not an sccluster model, or one saved
    in another model format.
    """
    payload = read_model_file(path)
    classes = {cls.__name__: cls for cls in _REGISTRY.values()}
    if payload["class"] not in classes:
        msg = f"{str(path)!r} holds a {payload['class']!r} model, which this sccluster does not know; refit the model"
        raise InputError(msg)
    return classes[payload["class"]]._from_payload(payload, path, device)


def get_model_class(method: str) -> type[ClusterModel]:
    """The model class registered under ``method``."""
    try:
        return _REGISTRY[method]
    except KeyError:
        msg = f"unknown method {method!r}; choose one of {', '.join(available_methods())}"
        raise InputError(msg) from None


__all__ = [
    "DEFAULT_METHOD",
    "MODEL_FORMAT",
    "BGFormer",
    "ClusterModel",
    "KChoice",
    "KMeansBaseline",
    "LeidenBaseline",
    "ResolutionChoice",
    "SiameseClu",
    "available_methods",
    "choose_k",
    "choose_resolution",
    "get_model_class",
    "load",
]
