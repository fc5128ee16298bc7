"""Saving and loading fitted models: one file per model, with a format version."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sccluster._errors import InputError
from sccluster._utils import atomic_path, check_output_path, load_torch_file, resolve_device
from sccluster._version import __version__

if TYPE_CHECKING:
    from typing import Self

#: Version of the on-disk model format. Bump when a saved file can no longer be read, or would be read
#: differently (2: SiameseClu saves the training degrees; 3: clusters numbered by decreasing size).
MODEL_FORMAT = 3


class SavableModel:
    """:meth:`save`, :meth:`load` and the payload behind them, for :class:`~sccluster.models.ClusterModel`.

    A subclass provides ``_get_state`` / ``_set_state`` (its learned tensors and arrays), sets
    ``supports_save = True``, and has the model surface (``name``, ``params_``, ``get_params``,
    ``_check_fitted``) from :class:`~sccluster.models.ClusterModel`.
    """

    name: ClassVar[str]
    supports_save: ClassVar[bool] = False
    params_: dict[str, Any]

    def get_params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        raise NotImplementedError

    def _get_state(self) -> dict[str, Any]:
        """Learned state to save (tensors, arrays, plain Python)."""
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any], device: str) -> None:
        raise NotImplementedError

    _SAVED_ATTRS: ClassVar[tuple[str, ...]] = (
        "labels_",
        "n_clusters_",
        "seed_",
        "history_",
        "fit_time_",
        "confidence_",
        "soft_assignments_",
        "embedding_",
        "cluster_ids_",
        "resolution_",
        "resolution_table_",
    )

    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write the fitted model to one file (weights, hyperparameters, genes, scaling, version).

        The file is written to a temporary name and renamed, so an interrupted save leaves nothing.
        """
        import torch

        self._check_fitted()
        if not self.supports_save:
            msg = f"method {self.name!r} does not support save(); only model methods can be saved"
            raise InputError(msg)
        path = check_output_path(path)  # a writable file path in an existing folder
        if path.exists() and not overwrite:
            msg = f"{str(path)!r} already exists; pass overwrite=True or choose another path"
            raise InputError(msg)
        payload = self.to_payload()
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    def to_payload(self) -> dict[str, Any]:
        """Everything :meth:`save` writes, as a dict (format, version, class, hyperparameters, state).

        Containers that store a model inside their own file (a label-transfer model) save this dict and
        restore the model with :func:`sccluster.models.from_payload`.
        """
        self._check_fitted()
        if not self.supports_save:
            msg = f"method {self.name!r} does not support save(); only model methods can be saved"
            raise InputError(msg)
        return {
            "format": MODEL_FORMAT,
            "sccluster_version": __version__,
            "class": type(self).__name__,
            "params": self.params_,
            "fitted": {k: getattr(self, k, None) for k in self._SAVED_ATTRS},
            "state": self._get_state(),
        }

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> Self:
        """Load a model written by :meth:`save`.

        The file is unpickled (``torch.load`` with ``weights_only=False``), which can run code: load
        only model files you or a source you trust wrote. :func:`sccluster.models.load` loads a model
        of any class.

        Raises :class:`InputError` when the file is missing, is not an sccluster model, holds another
        model class, or was written in an incompatible format version.
        """
        payload = read_model_file(path)
        if payload["class"] != cls.__name__:
            msg = f"{str(path)!r} holds a {payload['class']} model; load it with {payload['class']}.load()"
            raise InputError(msg)
        return cls._from_payload(payload, path, device)

    @classmethod
    def _from_payload(cls, payload: dict[str, Any], path: str | Path, device: str) -> Self:
        """The model held by a payload of :func:`read_model_file` (of this class)."""
        import torch

        resolve_device(device)  # a bad device is the caller's error, not a mismatched file
        try:
            model = cls(**payload["params"])
            model.params_ = model.get_params()
            for key, value in payload["fitted"].items():
                setattr(model, key, value)
            with torch.random.fork_rng(devices=[]):  # building the net draws initial weights
                model._set_state(payload["state"], device)
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
            msg = (
                f"{str(path)!r} (saved by sccluster {payload.get('sccluster_version')}) does not match this "
                f"sccluster {__version__}'s {cls.__name__} ({type(err).__name__}); refit the model with this version"
            )
            raise InputError(msg) from None
        return model


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The payload of a model file written by :meth:`ClusterModel.save`, checked for its format version.

    Raises :class:`InputError` when the file is missing, is not an sccluster model file, or was written in
    another model format.
    """
    payload = load_torch_file(path, "model file", "save it again with model.save()")
    if not isinstance(payload, dict) or "format" not in payload or "class" not in payload:
        msg = f"{str(path)!r} is not an sccluster model file; save it again with model.save()"
        raise InputError(msg)
    if payload["format"] != MODEL_FORMAT:
        msg = (
            f"{str(path)!r} was saved by sccluster {payload.get('sccluster_version')} in model format "
            f"{payload['format']}, but this sccluster {__version__} reads format {MODEL_FORMAT}; "
            "refit the model with this version"
        )
        raise InputError(msg)
    return payload
