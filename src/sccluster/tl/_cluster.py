"""``tl.cluster``: fit a clustering method on an AnnData and write its results into it."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from sccluster._errors import InputError
from sccluster._utils import MAX_SEED, resolve_seed
from sccluster._validation import check_adata, check_n_clusters, on_disk
from sccluster._version import __version__
from sccluster.data import read_batches
from sccluster.metrics import single_batch_clusters
from sccluster.models import DEFAULT_METHOD, available_methods, get_model_class
from sccluster.models._params import check_flag, check_number

from ._consensus import consensus_labels

#: Most seeds ``cluster(n_seeds=...)`` accepts.
MAX_SEEDS = 100

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
    method: str = DEFAULT_METHOD,
    n_clusters: int | None = None,
    key_added: str = "sccluster",
    random_state: int | None = 0,
    layer: str | None = None,
    copy: bool = False,
    n_seeds: int = 1,
    return_model: bool = False,
    batch_key: str | None = None,
    **model_kwargs: Any,
):
    """Cluster the cells of ``adata`` with ``method`` and store the result in it.

    Parameters
    ----------
    adata
        AnnData with raw counts, ideally prepared by :func:`sccluster.pp.prepare`.
    method
        A name from :func:`sccluster.models.available_methods` (``"bgformer"``, ``"siamese"``, ``"leiden"``,
        ``"kmeans"``); default :data:`sccluster.models.DEFAULT_METHOD` (``"siamese"``).
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
    n_seeds
        Number of fits (1-100, default 1), with seeds ``random_state``, ``random_state + 1``, ... one
        after the other. Above 1 the labels are their consensus (:func:`consensus_labels`: each seed's
        partition aligned by Hungarian matching to the medoid partition, the one that agrees best
        with the others, then a per-cell vote), ``obs[f"{key_added}_agreement"]`` holds each cell's
        fraction of seeds that agree with its consensus label, and ``uns[key_added]["stability"]``
        holds ``n_seeds``, ``seeds``, ``reference_seed`` (the medoid), ``pairwise_ari`` and
        ``mean_pairwise_ari`` (between seeds), ``clusters`` and ``cluster_agreement`` (the mean
        agreement of each cluster's cells). The embedding, confidence and soft assignments written are
        those of the reference seed's model. No labels are involved.
    return_model
        Also return the fitted model (with ``n_seeds > 1``, the reference seed's), so that new cells
        can be assigned (``model.predict``) without refitting.
    batch_key
        Column of ``obs`` naming each cell's batch (donor, sample, lane, condition), so that batches do
        not become clusters; ``None`` (default) for none. Checked before any fitting (every cell needs a
        value, every batch at least 2 cells) and passed to the model; only methods with a ``batch_key``
        parameter take it (``"bgformer"``, ``"siamese"``, ``"leiden"``; ``"kmeans"`` has no batch correction and
        raises :class:`InputError`). Labels are never involved.
    **model_kwargs
        Hyperparameters of the method's model class (unknown names raise :class:`InputError`).

    Returns
    -------
    The clustered copy when ``copy``, else ``None``; with ``return_model``, the model instead of
    ``None``, or ``(copy, model)``. Writes ``obs[key_added]`` (categorical labels ``"0"``, ``"1"``,
    ..., by decreasing cluster size), ``obs[f"{key_added}_confidence"]`` when the method has one,
    ``obsm[f"X_{key_added}"]`` (the embedding clustered), ``obsm[f"{key_added}_proba"]`` when soft
    assignments exist, and ``uns[key_added]`` = ``{method, params, n_clusters, n_clusters_requested,
    time_s, seed, sccluster_version}``, plus ``history`` (the training history as columns, see
    :func:`history_columns`) for iterative methods and ``resolution`` when the method ran Leiden at a
    resolution (chosen by subsample stability or as given). With ``batch_key``, ``uns[key_added]`` also
    holds ``batch_key``, ``n_batches``, ``batches`` (names), ``batch_sizes`` (cells per batch) and
    ``n_single_batch_clusters``: clusters with more than 90 % of their cells from one batch (a label-free
    sign of batches kept apart; a cell type present in one batch only is such a cluster too).
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
    check_number("n_seeds", n_seeds, 1, MAX_SEEDS, integer=True)
    check_flag("return_model", return_model)
    check_n_clusters(n_clusters, adata.n_obs)
    batches = None
    if batch_key is not None:
        if "batch_key" not in cls._param_names():
            takes = [m for m in available_methods() if "batch_key" in get_model_class(m)._param_names()]
            msg = (
                f"method {method!r} does not take batch_key (it has no batch correction); batch_key is supported "
                f"by {', '.join(map(repr, takes))}: use one of those or leave batch_key out"
            )
            raise InputError(msg)
        batches = read_batches(adata, batch_key, warn=False)  # bad batches are an error before any fitting
        model_kwargs["batch_key"] = batch_key
    seed = resolve_seed(random_state)
    seeds = [(seed + i) % (MAX_SEED + 1) for i in range(int(n_seeds))]
    models = [cls(n_clusters=n_clusters, random_state=s, **model_kwargs) for s in seeds]
    if copy:  # a backed AnnData cannot be copied; its in-memory version is the copy
        adata = adata.to_memory() if on_disk(adata) else adata.copy()
    start = time.perf_counter()
    for i, model in enumerate(models):
        if len(models) > 1:
            logger.info("cluster: seed %d (%d of %d)", seeds[i], i + 1, len(models))
        model.fit(adata, layer=layer)
    elapsed = time.perf_counter() - start

    model, labels, proba, confidence = (
        models[0],
        models[0].labels_,
        models[0].soft_assignments_,
        models[0].confidence_,
    )
    stability = None
    if len(models) > 1:
        cons = consensus_labels([m.labels_ for m in models])
        model = models[cons.reference]
        order = _by_size(cons.labels)  # consensus ids (the reference's), largest first
        labels = _ranks(order)[cons.labels]
        proba, confidence = model.soft_assignments_, model.confidence_
        if proba is not None:  # the reference model's columns, in the new label order
            proba = proba[:, order] / proba[:, order].sum(axis=1, keepdims=True)
        adata.obs[f"{key_added}_agreement"] = cons.agreement
        stability = {
            "n_seeds": len(models), "seeds": np.asarray(seeds), "reference_seed": int(seeds[cons.reference]),
            "pairwise_ari": cons.pairwise_ari, "mean_pairwise_ari": cons.mean_pairwise_ari,
            "clusters": np.asarray([str(k) for k in range(len(order))], dtype=object),
            "cluster_agreement": cons.cluster_agreement[order],
        }  # fmt: skip
    elif f"{key_added}_agreement" in adata.obs:
        del adata.obs[f"{key_added}_agreement"]
    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    adata.obs[key_added] = pd.Categorical(labels.astype(str), categories=[str(k) for k in present])
    # slots of an earlier run under the same key that this method does not write are removed, not left stale
    if f"{key_added}_confidence" in adata.obs:
        del adata.obs[f"{key_added}_confidence"]
    adata.obsm.pop(f"{key_added}_proba", None)
    if confidence is not None:
        adata.obs[f"{key_added}_confidence"] = np.asarray(confidence, dtype=np.float32)
    adata.obsm[f"X_{key_added}"] = np.asarray(model.embedding_, dtype=np.float32)
    if proba is not None:
        adata.obsm[f"{key_added}_proba"] = np.asarray(proba, dtype=np.float32)
    adata.uns[key_added] = {
        "method": method,
        "params": _json_friendly(model.get_params()),
        "n_clusters": len(present),
        "n_clusters_requested": None if n_clusters is None else int(n_clusters),
        "time_s": float(elapsed),
        "seed": int(seed),
        "sccluster_version": __version__,
    }
    if stability is not None:
        adata.uns[key_added]["stability"] = stability
    if model.history_:
        adata.uns[key_added]["history"] = history_columns(model.history_)
    resolution = getattr(model, "resolution_", None)
    if resolution is not None:  # the Leiden resolution used (chosen by stability, or as given)
        adata.uns[key_added]["resolution"] = float(resolution)
    if batches is not None:
        adata.uns[key_added].update(_batch_summary(batches, labels))
    logger.info(
        "cluster: %s found %d clusters in %.1f s; labels in obs[%r]",
        method,
        len(present),
        elapsed,
        key_added,
    )
    if return_model:
        return (adata, model) if copy else model
    return adata if copy else None


def _batch_summary(batches, labels: np.ndarray) -> dict[str, Any]:
    """What ``uns[key_added]`` records about the batches: key, names, sizes and single-batch clusters."""
    return {
        "batch_key": batches.key,
        "n_batches": int(batches.n_batches),
        "batches": np.asarray(batches.categories, dtype=object),
        "batch_sizes": np.asarray(batches.n_cells, dtype=np.int64),
        "n_single_batch_clusters": single_batch_clusters(labels, batches.codes)
        if batches.n_batches > 1
        else 0,
    }


def _by_size(labels: np.ndarray) -> np.ndarray:
    """The ids present in ``labels``, largest cluster first (ties: smaller id first)."""
    ids, sizes = np.unique(labels, return_counts=True)
    return ids[np.argsort(-sizes, kind="stable")]


def _ranks(order: np.ndarray) -> np.ndarray:
    ranks = np.full(int(order.max()) + 1, -1, dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks
