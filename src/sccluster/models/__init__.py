"""Clustering methods behind one surface: baselines and the deep models."""

from __future__ import annotations

from .._errors import InputError
from ._base import MODEL_FORMAT, ClusterModel
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

def available_methods() -> list[str]:
    """Names accepted by ``tl.cluster(method=...)`` and ``sccluster cluster --method``."""
    return sorted(_REGISTRY)


def get_model_class(method: str) -> type[ClusterModel]:
    """The model class registered under ``method``."""
    try:
        return _REGISTRY[method]
    except KeyError:
        msg = f"unknown method {method!r}; choose one of {', '.join(available_methods())}"
        raise InputError(msg) from None


__all__ = [
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
]
