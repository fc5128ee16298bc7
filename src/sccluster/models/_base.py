"""The model surface shared by every clustering method (scikit-learn style, AnnData in)."""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from typing import Any, ClassVar

import numpy as np

from sccluster._errors import InputError
from sccluster._utils import (
    resolve_device,
    resolve_seed,
    seeded_torch,
)
from sccluster._validation import check_adata, check_n_clusters

from ._persistence import SavableModel

logger = logging.getLogger(__name__)


class ClusterModel(SavableModel):
    """Base class of all sccluster clustering methods.

    Subclasses store their hyperparameters in ``__init__`` (keyword arguments only, stored
    unchanged, scikit-learn style) and implement :meth:`_fit`, and usually :meth:`_transform` and
    :meth:`_predict`. Learned state ends in ``_``.

    After :meth:`fit`:

    - ``labels_``: cluster of every training cell, ``int64`` of shape ``(n_obs,)``; cluster 0 is the
      largest, 1 the next, and so on.
    - ``embedding_``: the representation the clusters were found in, ``(n_obs, d)``.
    - ``n_clusters_``: number of clusters found (equals ``n_clusters`` when that was given).
    - ``soft_assignments_``: per-cell cluster probabilities ``(n_obs, n_clusters_)``, or ``None``.
    - ``confidence_``: per-cell confidence in ``[0, 1]`` (max soft assignment), or ``None``.
    - ``history_``: list of per-epoch dicts (losses), empty for non-iterative methods.
    - ``fit_time_``: wall time of :meth:`fit` in seconds.
    - ``seed_``: the integer seed actually used.
    - ``params_``: the hyperparameters of the fit (:meth:`get_params` when it started); :meth:`save`
      writes these and new cells are embedded with them, so a later :meth:`set_params` only takes
      effect at the next :meth:`fit`.
    """

    #: Name used by ``tl.cluster(method=...)`` and the CLI.
    name: ClassVar[str] = "base"
    #: Whether :meth:`predict`/:meth:`transform` work on new cells.
    supports_predict: ClassVar[bool] = False
    #: Whether :meth:`save`/:meth:`load` are available.
    supports_save: ClassVar[bool] = False

    # learned in fit (see above)
    labels_: np.ndarray
    embedding_: np.ndarray
    n_clusters_: int

    def __init__(self, n_clusters: int | None = None, *, random_state: int | None = 0) -> None:
        self.n_clusters = n_clusters
        self.random_state = random_state

    # ------------------------------------------------------------------ params
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p
            for p in sig.parameters
            if p != "self" and sig.parameters[p].kind != inspect.Parameter.VAR_KEYWORD
        ]

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> ClusterModel:
        """Set hyperparameters; unknown names raise :class:`InputError`."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                msg = f"unknown parameter {key!r} for method {self.name!r}; valid: {sorted(valid)}"
                raise InputError(msg)
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ fitting
    def fit(self, adata, *, layer: str | None = None) -> ClusterModel:
        """Fit the model on ``adata`` and set ``labels_`` and the other learned attributes.

        Parameters
        ----------
        adata
            AnnData with raw counts (in ``layers["counts"]``, ``X`` or ``layer``), ideally prepared
            by :func:`sccluster.pp.prepare`.
        layer
            Layer holding raw counts, if not ``layers["counts"]`` or ``X``.

        Returns
        -------
        The fitted model.
        """
        check_adata(adata)
        check_n_clusters(self.n_clusters, adata.n_obs)
        seed = resolve_seed(self.random_state)
        self._clear_fitted()
        self.params_ = self.get_params()
        self.seed_ = seed
        self.history_: list[dict[str, float]] = []
        self.soft_assignments_: np.ndarray | None = None
        self.confidence_: np.ndarray | None = None
        start = time.perf_counter()
        try:
            device = self._torch_device()
            with contextlib.nullcontext() if device is None else seeded_torch(seed, device):
                self._fit(adata, layer=layer)
        except BaseException:
            self._clear_fitted()  # a failed (re)fit leaves an unfitted model, never a mix of two fits
            raise
        self.fit_time_ = time.perf_counter() - start
        self._compact_clusters()
        if self.soft_assignments_ is not None and self.confidence_ is None:
            self.confidence_ = self.soft_assignments_.max(axis=1)
        logger.info("%s: %d clusters in %.1f s", self.name, self.n_clusters_, self.fit_time_)
        return self

    def _fit(self, adata, *, layer: str | None) -> None:
        raise NotImplementedError

    def _torch_device(self):
        """The torch device a fit will use, ``None`` for methods without a ``device`` (they use no torch).

        Resolved before any work, so a bad ``device`` is an input error up front; a method with a device
        gets torch's global generators seeded from ``seed_`` for its fit, and the caller's restored.
        """
        return resolve_device(self.device) if "device" in self._param_names() else None

    def _clear_fitted(self) -> None:
        """Remove every learned attribute (public names ending in ``_``), so the model is unfitted."""
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, key)

    def _compact_clusters(self) -> None:
        """Number the clusters 0..k-1 by decreasing size and drop model clusters no training cell ended in.

        Cluster 0 is the largest (ties keep the model's order), as in scanpy's Leiden, so the numbering
        does not depend on the arbitrary order of a model's centres. A clustering head can also leave a
        centre empty. ``cluster_ids_`` records the model's columns in the new order (``None`` when
        that order is the model's own), and :meth:`predict_proba` and :meth:`predict` use the same
        columns, so the labels of new cells live in the same space as ``labels_``.
        """
        labels = np.asarray(self.labels_, dtype=np.int64)
        ids, sizes = np.unique(labels, return_counts=True)
        order = ids[np.argsort(-sizes, kind="stable")]  # model cluster ids, largest first
        soft = self.soft_assignments_
        n_model = soft.shape[1] if soft is not None else int(ids.max()) + 1
        self.cluster_ids_: np.ndarray | None = None
        if not np.array_equal(order, np.arange(n_model)):
            self.cluster_ids_ = order
            if soft is not None and len(order) < n_model:  # empty columns dropped: renormalise
                soft = soft[:, order]
                self.soft_assignments_ = soft / soft.sum(axis=1, keepdims=True)
                self.confidence_ = None  # recomputed by fit
            elif soft is not None:  # a permutation: each cell's confidence is unchanged
                self.soft_assignments_ = soft[:, order]
            self._reorder_clusters(order)
        self.labels_ = _ranks(order)[labels]
        self.n_clusters_ = len(order)

    def _reorder_clusters(self, order: np.ndarray) -> None:
        """Hook: put per-cluster attributes in the order ``order`` (model cluster ids, new label order)."""

    def fit_predict(self, adata, *, layer: str | None = None) -> np.ndarray:
        """Fit on ``adata`` and return the training labels."""
        return self.fit(adata, layer=layer).labels_

    def _check_fitted(self) -> None:
        if not hasattr(self, "labels_"):
            msg = f"this {type(self).__name__} is not fitted yet; call fit(adata) first"
            raise InputError(msg)

    def _check_predict(self, adata) -> None:
        self._check_fitted()
        check_adata(adata)
        if not self.supports_predict:
            msg = f"method {self.name!r} cannot assign new cells; use a model method such as 'bgformer' or 'siamese'"
            raise InputError(msg)

    def predict(self, adata, *, layer: str | None = None) -> np.ndarray:
        """Cluster labels for the cells of ``adata`` (new cells, aligned by gene names).

        Raw counts are read as in ``fit``. Size factors come from ``obs["size_factors"]`` when present,
        otherwise each cell's library size is divided by the training cells' reference library size, so
        a cell gets the same factor whether it is predicted alone or with others.
        """
        self._check_predict(adata)
        ids = getattr(self, "cluster_ids_", None)
        if ids is None:
            return np.asarray(self._predict(adata, layer=layer), dtype=np.int64)
        if type(self)._predict_proba is not ClusterModel._predict_proba:  # never a dropped cluster
            return self.predict_proba(adata, layer=layer).argmax(axis=1).astype(np.int64)
        raw = np.asarray(self._predict(adata, layer=layer), dtype=np.int64)
        ranks = _ranks(ids, size=max(int(ids.max()), int(raw.max(initial=0))) + 1)
        return ranks[raw]  # -1: a cluster that no training cell was in

    def predict_proba(self, adata, *, layer: str | None = None) -> np.ndarray:
        """Soft cluster assignments ``(n_obs, n_clusters_)`` for the cells of ``adata``."""
        self._check_predict(adata)
        proba = self._predict_proba(adata, layer=layer)
        ids = getattr(self, "cluster_ids_", None)
        if ids is not None:
            proba = proba[:, ids]
            proba = proba / proba.sum(axis=1, keepdims=True)
        return proba

    def transform(self, adata, *, layer: str | None = None) -> np.ndarray:
        """Embedding ``(n_obs, d)`` of the cells of ``adata``."""
        self._check_predict(adata)
        return self._transform(adata, layer=layer)

    get_latent_representation = transform

    def _predict(self, adata, *, layer: str | None) -> np.ndarray:
        return self._predict_proba(adata, layer=layer).argmax(axis=1)

    def _predict_proba(self, adata, *, layer: str | None) -> np.ndarray:
        raise NotImplementedError

    def _transform(self, adata, *, layer: str | None) -> np.ndarray:
        raise NotImplementedError


def _ranks(order: np.ndarray, size: int | None = None) -> np.ndarray:
    """Lookup from a model cluster id to its position in ``order`` (``-1`` for ids not in it)."""
    ranks = np.full(int(order.max()) + 1 if size is None else size, -1, dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks
