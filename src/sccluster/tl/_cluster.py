"""``tl.cluster``: fit a clustering method on an AnnData and write its results into it."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from .._errors import InputError
from .._utils import resolve_seed
from .._validation import check_adata, check_n_clusters
from .._version import __version__
from ..models import get_model_class

logger = logging.getLogger(__name__)


def _json_friendly(value: Any) -> Any:
    """Plain Python (and h5ad-writable) version of a hyperparameter value."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _json_friendly(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_friendly(v) for v in value]
    return str(value)


def history_columns(history: list[dict]) -> dict[str, np.ndarray]:
    """A model's ``history_`` (one dict per logged step) as columns: one array per key over all rows.

    A key missing from a row is NaN there (numbers) or ``""`` (strings), so the columns have equal
    lengths and the dict can be written to an ``.h5ad`` file.
    """
    keys = list(dict.fromkeys(k for row in history for k in row))
    out = {}
    for key in keys:
        values = [row.get(key) for row in history]
        if any(isinstance(v, str) for v in values):
            out[key] = np.asarray(["" if v is None else str(v) for v in values], dtype=object)
        else:
            out[key] = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return out


def cluster(
    adata,
    *,
    method: str = "leiden",
    n_clusters: int | None = None,
    key_added: str = "sccluster",
    random_state: int | None = 0,
    layer: str | None = None,
    copy: bool = False,
    **model_kwargs: Any,
):
    """Cluster the cells of ``adata`` with ``method`` and store the result in it.

    Parameters
    ----------
    adata
        AnnData with raw counts, ideally prepared by :func:`sccluster.pp.prepare`.
    method
        A name from :func:`sccluster.models.available_methods` (``"leiden"``, ``"kmeans"``, ...).
    n_clusters
        Number of clusters wanted, or ``None`` to let the method decide.
    key_added
        Prefix of the slots written.
    random_state
        Seed (``None`` draws one; the seed used is stored).
    layer
        Layer holding raw counts, if not ``layers["counts"]`` or ``X``.
    copy
        Work on a copy and return it instead of modifying ``adata``.
    **model_kwargs
        Hyperparameters of the method's model class (unknown names raise :class:`InputError`).

    Returns
    -------
    The clustered copy when ``copy``, else ``None``. Writes ``obs[key_added]`` (categorical labels
    ``"0"``, ``"1"``, ..., by decreasing cluster size), ``obs[f"{key_added}_confidence"]`` when the
    method has one, ``obsm[f"X_{key_added}"]`` (the embedding clustered), ``obsm[f"{key_added}_proba"]``
    when soft assignments exist, and ``uns[key_added]`` = ``{method, params, n_clusters, n_clusters_requested,
    time_s, seed, sccluster_version}``, plus ``history`` (the training history as columns, see
    :func:`history_columns`) for iterative methods and ``resolution`` when the method ran Leiden at a resolution
    (chosen by subsample stability or as given). Use the model classes directly to keep the fitted model.
    """
    check_adata(adata)
    if not isinstance(key_added, str) or not key_added:
        msg = f"key_added must be a non-empty string, got {key_added!r}"
        raise InputError(msg)
    cls = get_model_class(method)
    valid = set(cls._param_names()) - {"n_clusters", "random_state"}
    unknown = sorted(set(model_kwargs) - valid)
    if unknown:
        names = ", ".join(map(repr, unknown))
        msg = f"unknown parameter(s) {names} for method {method!r}; valid: {', '.join(sorted(valid))}"
        raise InputError(msg)
    check_n_clusters(n_clusters, adata.n_obs)
    seed = resolve_seed(random_state)
    model = cls(n_clusters=n_clusters, random_state=seed, **model_kwargs)
    if copy:  # a backed AnnData cannot be copied; its in-memory version is the copy
        adata = adata.to_memory() if adata.isbacked else adata.copy()
    start = time.perf_counter()
    model.fit(adata, layer=layer)
    elapsed = time.perf_counter() - start

    labels = np.asarray(model.labels_, dtype=np.int64)
    present = np.unique(labels)
    adata.obs[key_added] = pd.Categorical(labels.astype(str), categories=[str(k) for k in present])
    # slots of an earlier run under the same key that this method does not write are removed, not left stale
    if f"{key_added}_confidence" in adata.obs:
        del adata.obs[f"{key_added}_confidence"]
    adata.obsm.pop(f"{key_added}_proba", None)
    if model.confidence_ is not None:
        adata.obs[f"{key_added}_confidence"] = np.asarray(model.confidence_, dtype=np.float32)
    adata.obsm[f"X_{key_added}"] = np.asarray(model.embedding_, dtype=np.float32)
    if model.soft_assignments_ is not None:
        adata.obsm[f"{key_added}_proba"] = np.asarray(model.soft_assignments_, dtype=np.float32)
    adata.uns[key_added] = {
        "method": method,
        "params": _json_friendly(model.get_params()),
        "n_clusters": int(model.n_clusters_),
        "n_clusters_requested": None if n_clusters is None else int(n_clusters),
        "time_s": float(elapsed),
        "seed": int(model.seed_),
        "sccluster_version": __version__,
    }
    if model.history_:
        adata.uns[key_added]["history"] = history_columns(model.history_)
    resolution = getattr(model, "resolution_", None)
    if resolution is not None:  # the Leiden resolution used (chosen by stability, or as given)
        adata.uns[key_added]["resolution"] = float(resolution)
    logger.info(
        "cluster: %s found %d clusters in %.1f s; labels in obs[%r]",
        method,
        model.n_clusters_,
        elapsed,
        key_added,
    )
    return adata if copy else None
