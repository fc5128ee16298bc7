"""Clustering methods behind one surface: baselines and the deep models."""

from __future__ import annotations

from pathlib import Path

from sccluster._errors import InputError

from ._base import ClusterModel
from ._baselines import KMeansBaseline, LeidenBaseline
from ._bgformer import BGFormer
from ._persistence import MODEL_FORMAT, read_model_file
from ._siamese import SiameseClu
from ._stability import KChoice, ResolutionChoice, choose_k, choose_resolution

_REGISTRY: dict[str, type[ClusterModel]] = {
    LeidenBaseline.name: LeidenBaseline,
    KMeansBaseline.name: KMeansBaseline,
    BGFormer.name: BGFormer,
    SiameseClu.name: SiameseClu,
}

#: The method ``tl.cluster``, ``sccluster cluster`` and ``sccluster demo`` use unless told otherwise: the one
#: with the best mean ARI with k estimated over the benchmark datasets (docs/decisions/0012-default-method-bgformer.md,
#: re-applied in docs/decisions/0021-default-method-siamese.md).
DEFAULT_METHOD = "siamese"


def available_methods() -> list[str]:
    """Names accepted by ``tl.cluster(method=...)`` and ``sccluster cluster --method``."""
    return sorted(_REGISTRY)


def load(path: str | Path, *, device: str = "auto") -> ClusterModel:
    """Load a model saved with ``model.save(path)``, whatever its class (read from the file).

    The file is unpickled, which can run code: load only model files you or a source you trust wrote.
    Raises :class:`InputError` for a missing file, a file that is not an sccluster model, or one saved
    in another model format.
    """
    return from_payload(read_model_file(path), path, device=device)


def from_payload(payload: dict, source: str | Path = "model", *, device: str = "auto") -> ClusterModel:
    """The model held by ``payload`` (:meth:`ClusterModel.to_payload`), whatever its class.

    ``source`` names where the payload came from in error messages. Raises :class:`InputError` for a
    class this sccluster does not know or a payload of another model format.
    """
    if not isinstance(payload, dict) or "class" not in payload or payload.get("format") != MODEL_FORMAT:
        msg = f"{str(source)!r} holds no model in this sccluster's format {MODEL_FORMAT}; refit the model"
        raise InputError(msg)
    classes = {cls.__name__: cls for cls in _REGISTRY.values()}
    if payload["class"] not in classes:
        msg = f"{str(source)!r} holds a {payload['class']!r} model, which this sccluster does not know; refit the model"
        raise InputError(msg)
    return classes[payload["class"]]._from_payload(payload, source, device)


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
    "from_payload",
    "get_model_class",
    "load",
]
