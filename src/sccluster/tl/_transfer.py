"""Label transfer: a deep model (or PCA) fitted on labelled reference cells names the cells of a query.

The embedding model is fitted without labels on the reference; a calibrated classifier is trained on the
reference embedding with the reference labels; query cells are embedded with the model's ``transform``
(genes matched by name) and classified, and cells that fit no reference type are called ``"unknown"``.
Query labels are never read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sccluster._errors import InputError
from sccluster._utils import atomic_path, check_output_path, load_torch_file, resolve_seed
from sccluster._validation import check_adata, on_disk
from sccluster._version import __version__
from sccluster.data import read_batches
from sccluster.models import available_methods, from_payload, get_model_class
from sccluster.models._params import check_choice, check_number
from sccluster.models._pca_embedder import PCAEmbedder
from sccluster.pp._stream import counts_matrix, iter_chunks

from ._classifier import MAX_TRAIN_CELLS, CalibratedClassifier, NoveltyScorer, stratified_subsample
from ._features import FEATURES, features, iter_features

logger = logging.getLogger(__name__)

#: File format version of a saved :class:`LabelTransfer`.
TRANSFER_FORMAT = 1
#: Fewest of the model's genes a query must have (as a fraction); missing ones are read as zero counts.
MIN_SHARED_GENES = 0.5
#: Embeddings of a deep model the classifier can read (see :class:`LabelTransfer`).
REPRESENTATIONS = ("encoder", "clustered")
#: The label of query cells that fit no reference type.
UNKNOWN = "unknown"


def transfer_methods() -> list[str]:
    """Embeddings :class:`LabelTransfer` can use: the models that embed new cells, and ``"pca"``."""
    return sorted(
        [m for m in available_methods() if get_model_class(m).supports_predict] + [PCAEmbedder.name]
    )


@dataclass
class TransferResult:
    """Labels of query cells.

    ``labels`` (with ``"unknown"``), the best reference type ``predicted``, its calibrated probability
    ``confidence``, the ``novelty`` score (above 1: unlike the reference), ``proba`` ``(n, n_classes)``
    over ``classes``, and the query ``embedding``.
    """

    labels: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    novelty: np.ndarray
    proba: np.ndarray
    classes: np.ndarray
    embedding: np.ndarray

    @property
    def unknown(self) -> np.ndarray:
        """Whether each cell was called ``"unknown"``."""
        return self.labels == UNKNOWN


class LabelTransfer:
    """Classifier of cell types on a deep embedding, fitted on a labelled reference, with an "unknown" call.

    Parameters
    ----------
    label_key
        ``obs`` column of the reference holding its cell types. Cells with no value are used to fit the
        embedding but not the classifier.
    method
        Embedding: a model that embeds new cells (``"bgformer"``, default, or ``"siamese"``) or ``"pca"``
        (the scanpy recipe's PCA, fitted on the reference; the baseline).
    batch_key
        ``obs`` column of batches (donors, samples), in the reference and in every query: the model corrects
        for them, and a query batch not in the reference is z-scored with its own gene statistics (from 50
        cells on). Default ``None``.
    min_confidence
        Cells whose calibrated probability of their best type is below this are ``"unknown"``; 0 to 1
        (default 0.5: the classifier finds another type at least as likely).
    novelty_alpha
        Fraction of the reference cells beyond the novelty threshold: a query cell farther (Mahalanobis
        distance in the embedding, :class:`sccluster.tl._classifier.NoveltyScorer`) from every reference type
        than all but this fraction of the reference cells is ``"unknown"``. 0 to 0.5 (default 0.01).
    representation
        Which embedding of a deep model the classifier reads: ``"encoder"`` (default) the encoder trained
        by its reconstruction loss alone (the model is fitted with ``cluster_steps=0``), or ``"clustered"``
        the embedding after the clustering stage, which pulls cells towards ``n_clusters`` centres and can
        merge types (why the default: ``docs/decisions/0015-transfer-encoder-embedding.md``). Ignored by
        ``"pca"``.
    features
        What the classifier reads: ``"embedding"`` (default) the embedding alone, or ``"embedding+genes"``
        the embedding beside the model's input genes (its highly variable genes, log-normalised and z-scored
        as the model scales them, per batch with ``batch_key``), as CellTypist's logistic regression reads
        genes. The novelty score always reads the embedding alone. The genes are read for at most
        :data:`~sccluster.tl._classifier.MAX_TRAIN_CELLS` reference cells (about 4 GB of memory at 2,000 genes
        and that many cells) and for the query by chunks.
    random_state
        Seed of the model, the classifier's folds and the subsamples (default 0).
    **model_kwargs
        Hyperparameters of the embedding model (for example ``n_clusters``, which defaults to the number of
        reference types for the deep models).

    Attributes
    ----------
    model_
        The fitted embedding model. ``classes_``: the reference types. ``genes_``: the genes the model reads.
    """

    def __init__(self, label_key: str, *, method: str = "bgformer", batch_key: str | None = None,
                 min_confidence: float = 0.5, novelty_alpha: float = 0.01, representation: str = "encoder",
                 features: str = "embedding", random_state: int | None = 0,
                 **model_kwargs: Any) -> None:  # fmt: skip
        self.label_key = label_key
        self.method = method
        self.batch_key = batch_key
        self.min_confidence = min_confidence
        self.novelty_alpha = novelty_alpha
        self.representation = representation
        self.features = features
        self.random_state = random_state
        self.model_kwargs = model_kwargs
        self._check_params()

    def _check_params(self) -> None:
        if self.method not in transfer_methods():
            msg = f"method {self.method!r} cannot transfer labels; choose one of {', '.join(transfer_methods())}"
            raise InputError(msg)
        if not isinstance(self.label_key, str) or not self.label_key:
            msg = f"label_key must name an obs column of the reference, got {self.label_key!r}"
            raise InputError(msg)
        check_number("min_confidence", self.min_confidence, 0.0, 1.0)
        check_number("novelty_alpha", self.novelty_alpha, 0.0, 0.5)
        check_choice("representation", self.representation, REPRESENTATIONS)
        check_choice("features", self.features, FEATURES)
        if self.representation == "encoder" and "cluster_steps" in self.model_kwargs:
            msg = "cluster_steps is set by representation: leave it out, or use representation='clustered'"
            raise InputError(msg)
        resolve_seed(self.random_state)
        if self.method != PCAEmbedder.name:
            cls = get_model_class(self.method)
            unknown = sorted(set(self.model_kwargs) - set(cls._param_names()) - {"n_clusters"})
            if unknown or "random_state" in self.model_kwargs or "batch_key" in self.model_kwargs:
                reserved: list[str] = [k for k in ("random_state", "batch_key") if k in self.model_kwargs]
                bad = ", ".join(map(repr, unknown + reserved))
                msg = (
                    f"unknown or reserved model parameter(s) {bad} for method {self.method!r}: pass random_state and "
                    f"batch_key to the transfer itself; valid model parameters: see help({cls.__name__})"
                )
                raise InputError(msg)
        elif set(self.model_kwargs) - {"n_pcs", "n_top_genes"}:
            msg = "method 'pca' takes only the model parameters 'n_pcs' and 'n_top_genes'"
            raise InputError(msg)

    # ------------------------------------------------------------------ fitting
    def fit(self, reference, *, layer: str | None = None, genes: list[str] | None = None) -> LabelTransfer:
        """Fit the embedding on ``reference`` (raw counts), then the classifier and the novelty score.

        :data:`CALIBRATION_SHARE` of each type's labelled cells are held out of both fits and embedded with the
        model's ``transform``, as query cells will be: the classifier's temperature and the novelty threshold
        are fitted on them.

        ``genes`` restricts the model to these genes of the reference (for example those a query also has;
        :func:`transfer_labels` passes the shared genes).
        """
        check_adata(reference, "reference")
        seed = resolve_seed(self.random_state)
        labels, has_label = reference_labels(reference, self.label_key)
        if self.batch_key is not None:
            read_batches(reference, self.batch_key, warn=False)
        if genes is not None:
            reference = reference[:, reference.var_names.isin(genes)]
        classes = np.unique(labels[has_label])
        held = calibration_cells(labels, has_label, seed)
        fit_rows = np.flatnonzero(~held)
        model = self._new_model(len(classes), seed)
        logger.info("transfer: fitting %s on %d reference cells (%d types; %d more held out to calibrate)",
                    self.method, len(fit_rows), len(classes), int(held.sum()))  # fmt: skip
        model.fit(reference[fit_rows] if held.any() else reference, layer=layer)
        train = has_label[fit_rows]
        emb = np.asarray(model.embedding_, dtype=np.float32)[train]
        train_labels = labels[fit_rows][train]
        codes = np.searchsorted(classes, train_labels)
        # the classifier reads at most MAX_TRAIN_CELLS cells: only theirs get gene features
        sub = stratified_subsample(codes, MAX_TRAIN_CELLS, np.random.default_rng(seed))
        x = self._features(model, reference[fit_rows[train][sub]], emb[sub], layer)
        self.classifier_ = CalibratedClassifier.fit(x, train_labels[sub], seed=seed, classes=classes)
        self.novelty_ = NoveltyScorer.fit(emb, codes, len(classes), alpha=float(self.novelty_alpha),
                                          seed=seed)  # fmt: skip
        if held.any():  # cells neither the embedding nor the classifier saw: honest temperature and threshold
            held_cells = reference[np.flatnonzero(held)]
            cal = np.asarray(model.transform(held_cells, layer=layer), dtype=np.float32)
            self.classifier_.calibrate(self._features(model, held_cells, cal, layer), labels[held])
            self.novelty_.calibrate(cal)
        self.model_ = model
        self.classes_ = classes
        self.genes_ = list(model.genes_)
        self.reference_total_ = float(model.reference_total_)
        self.seed_ = seed
        self.n_reference_ = int(has_label.sum())
        logger.info("transfer: temperature %.2f, novelty threshold %.3g (calibrated on %d held-out cells)",
                    self.classifier_.temperature, self.novelty_.threshold, int(held.sum()))  # fmt: skip
        return self

    def fit_predict(self, reference, query, *, layer: str | None = None) -> TransferResult:
        """:meth:`fit` on the genes ``reference`` shares with ``query``, then :meth:`predict` the query.

        The reference's labels and the batch column of both are checked before any fitting.
        """
        check_adata(reference, "reference")
        check_adata(query, "query")
        reference_labels(reference, self.label_key)  # label errors before any work
        if self.batch_key is not None:
            read_batches(query, self.batch_key, categories=[])  # the query needs the column too
        genes = shared_genes(reference, query)
        self.fit(reference, layer=layer, genes=None if len(genes) == reference.n_vars else genes)
        return self.predict(query, layer=layer)

    def _features(self, model, cells, embedding: np.ndarray, layer: str | None) -> np.ndarray:
        """The classifier's inputs for ``cells`` (a few ten thousand at most) with their ``embedding``."""
        return features(self.features, model, cells, embedding, layer=layer, batch_key=self.batch_key)

    def _new_model(self, n_classes: int, seed: int):
        kwargs = dict(self.model_kwargs)
        if self.method == PCAEmbedder.name:
            return PCAEmbedder(batch_key=self.batch_key, random_state=seed, **kwargs)
        kwargs.setdefault("n_clusters", n_classes)
        if self.representation == "encoder":
            kwargs["cluster_steps"] = 0
        model_class: type[Any] = get_model_class(self.method)  # its constructor takes the method's keywords
        return model_class(batch_key=self.batch_key, random_state=seed, **kwargs)

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            msg = "this LabelTransfer is not fitted yet; call fit(reference) first"
            raise InputError(msg)

    def predict(self, query, *, layer: str | None = None) -> TransferResult:
        """Labels of the cells of ``query`` (raw counts; genes matched by name, missing ones read as zero)."""
        self._check_fitted()
        check_adata(query, "query")
        view = aligned_query(query, self.genes_, layer=layer, reference_total=self.reference_total_,
                             batch_key=self.batch_key)  # fmt: skip
        view_layer = None if view is not query else layer
        emb = np.asarray(self.model_.transform(view, layer=view_layer), dtype=np.float32)
        proba = np.empty((len(emb), len(self.classes_)), dtype=np.float32)
        for rows, x in iter_features(self.features, self.model_, view, emb, layer=view_layer,
                                     batch_key=self.batch_key):  # fmt: skip
            proba[rows] = self.classifier_.predict_proba(x)
        best = proba.argmax(axis=1)
        confidence = proba[np.arange(len(best)), best]
        novelty = self.novelty_.score(emb)
        predicted = self.classes_[best]
        unknown = (novelty > 1.0) | (confidence < self.min_confidence)
        labels = np.where(unknown, UNKNOWN, predicted).astype(object)
        logger.info("transfer: %d of %d query cells unknown (%d novel, %d below confidence %.2f)", int(unknown.sum()),
                    len(labels), int((novelty > 1).sum()), int((confidence < self.min_confidence).sum()),
                    self.min_confidence)  # fmt: skip
        return TransferResult(labels, predicted.astype(object), confidence.astype(np.float32), novelty, proba,
                              self.classes_, emb)  # fmt: skip

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write the fitted transfer model (embedding model, classifier, novelty reference) to one file, atomically."""
        import torch

        self._check_fitted()
        path = check_output_path(path)
        if path.exists() and not overwrite:
            msg = f"{str(path)!r} already exists; pass overwrite=True or choose another path"
            raise InputError(msg)
        payload = {
            "transfer_format": TRANSFER_FORMAT, "sccluster_version": __version__,
            "params": self.get_params(), "model": self.model_.to_payload(),
            "classifier": vars(self.classifier_), "novelty": self.novelty_.state_dict(),
            "classes": self.classes_, "seed": self.seed_, "n_reference": self.n_reference_,
            "reference_total": self.reference_total_, "genes": self.genes_,
        }  # fmt: skip
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> LabelTransfer:
        """Load a transfer model written by :meth:`save` (the file is unpickled: load only files you trust)."""
        payload = load_torch_file(
            path, "transfer model file", "fit and save it again with LabelTransfer.save()"
        )
        if not isinstance(payload, dict) or payload.get("transfer_format") != TRANSFER_FORMAT:
            msg = f"{str(path)!r} is not a label-transfer model of this sccluster {__version__}; fit and save it again"
            raise InputError(msg)
        params = {"features": "embedding", **payload["params"]}  # files written before the option
        model_kwargs = params.pop("model_kwargs")
        out = cls(**params, **model_kwargs)
        stored = payload["model"]
        out.model_ = PCAEmbedder.from_payload(stored) if stored.get("class") == "PCAEmbedder" else from_payload(
            stored, path, device=device)  # fmt: skip
        out.classifier_ = CalibratedClassifier(**payload["classifier"])
        out.novelty_ = NoveltyScorer(**payload["novelty"])
        out.classes_ = np.asarray(payload["classes"], dtype=object)
        out.genes_ = list(payload["genes"])
        out.reference_total_ = float(payload["reference_total"])
        out.seed_ = payload["seed"]
        out.n_reference_ = payload["n_reference"]
        return out

    def get_params(self) -> dict[str, Any]:
        """Parameters as given to ``__init__`` (``model_kwargs`` as one dict)."""
        return {"label_key": self.label_key, "method": self.method, "batch_key": self.batch_key,
                "min_confidence": self.min_confidence, "novelty_alpha": self.novelty_alpha,
                "representation": self.representation, "features": self.features,
                "random_state": self.random_state,
                "model_kwargs": dict(self.model_kwargs)}  # fmt: skip

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if k != "model_kwargs")
        extra = "".join(f", {k}={v!r}" for k, v in self.model_kwargs.items())
        return f"LabelTransfer({args}{extra})"


#: Share of the labelled reference cells held out to fit the temperature and the novelty threshold.
CALIBRATION_SHARE = 0.2
#: Most cells held out for calibration.
MAX_CALIBRATION_CELLS = 10_000


def calibration_cells(labels: np.ndarray, has_label: np.ndarray, seed: int) -> np.ndarray:
    """Mask of the labelled reference cells held out for calibration.

    :data:`CALIBRATION_SHARE` of each type (rounded down; types under 5 cells give none), at most
    :data:`MAX_CALIBRATION_CELLS` in all, seeded.
    """
    rng = np.random.default_rng([seed, 24])
    share = min(CALIBRATION_SHARE, MAX_CALIBRATION_CELLS / max(int(has_label.sum()), 1))
    held = np.zeros(len(labels), dtype=bool)
    for t in np.unique(labels[has_label]):
        cells = np.flatnonzero(has_label & (labels == t))
        n = int(len(cells) * share) if len(cells) >= 5 else 0
        held[rng.choice(cells, n, replace=False)] = True
    return held


def reference_labels(reference, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """The reference's labels as strings and whether each cell has one; one-line errors on bad labels."""
    if label_key not in reference.obs.columns:
        cols = ", ".join(map(repr, list(reference.obs.columns)[:8])) or "none"
        msg = f"label_key {label_key!r} is not a column of the reference's obs (columns: {cols}); name the column of cell types"
        raise InputError(msg)
    column = reference.obs[label_key]
    has = ~column.isna().to_numpy()
    labels = np.asarray([str(v) for v in column.to_numpy()], dtype=object)
    classes = np.unique(labels[has])
    if len(classes) < 2:
        msg = (
            f"the reference's obs[{label_key!r}] has {len(classes)} cell type(s); a classifier needs at least two: "
            "give a reference with several labelled types"
        )
        raise InputError(msg)
    if UNKNOWN in classes:
        logger.warning("transfer: the reference has a type named %r, the name also given to cells that fit no type",
                       UNKNOWN)  # fmt: skip
    if not has.all():
        logger.warning("transfer: %d reference cells have no %r; they shape the embedding but not the classifier",
                       int((~has).sum()), label_key)  # fmt: skip
    return labels, has


def shared_genes(reference, query) -> list[str]:
    """Genes (names) of ``reference`` also in ``query``, in the reference's order; an error when none are."""
    shared = reference.var_names[reference.var_names.isin(query.var_names)]
    if len(shared) == 0:
        msg = (
            "the query and the reference share no gene names (e.g. reference "
            f"{reference.var_names[0]!r}, query {query.var_names[0]!r}); use the same gene identifiers in both"
        )
        raise InputError(msg)
    return [str(g) for g in shared]


def aligned_query(
    query, genes: list[str], *, layer: str | None, reference_total: float, batch_key: str | None
):
    """``query`` itself when it has every gene in ``genes``, else an AnnData of those genes (missing: zero counts).

    The stand-in holds the counts of ``genes`` (CSR, streamed by row chunks), the query's size factors
    (``obs["size_factors"]``, else its library sizes over all its genes divided by ``reference_total``) and
    ``obs[batch_key]``. Fewer than :data:`MIN_SHARED_GENES` of the genes present is an error.
    """
    import anndata as ad
    import scipy.sparse as sp

    pos = query.var_names.get_indexer(genes)
    n_missing = int((pos < 0).sum())
    if not n_missing:
        return query
    if n_missing > (1 - MIN_SHARED_GENES) * len(genes):
        msg = (
            f"the query has only {len(genes) - n_missing} of the model's {len(genes)} genes; give a query measured "
            "on the same genes (same identifiers in var_names)"
        )
        raise InputError(msg)
    logger.warning("transfer: %d of the model's %d genes are missing from the query and read as zero counts",
                   n_missing, len(genes))  # fmt: skip
    matrix, _ = counts_matrix(query, layer)
    present = np.flatnonzero(pos >= 0)
    select = sp.csr_matrix((np.ones(len(present), dtype=np.float32), (pos[present], present)),
                           shape=(query.n_vars, len(genes)))  # fmt: skip
    blocks, totals = [], []
    for _, _, block in iter_chunks(matrix, query.n_obs):
        blocks.append((block @ select).astype(np.float32).tocsr())
        totals.append(np.asarray(block.sum(axis=1)).ravel())
    obs = pd.DataFrame(index=query.obs_names.copy())
    if "size_factors" in query.obs.columns:
        obs["size_factors"] = query.obs["size_factors"].to_numpy(dtype=np.float64)
    else:
        obs["size_factors"] = np.maximum(np.concatenate(totals), 1e-12) / reference_total
    if batch_key is not None and batch_key in query.obs.columns:
        obs[batch_key] = query.obs[batch_key].to_numpy()
    return ad.AnnData(X=sp.vstack(blocks, format="csr"), obs=obs, var=pd.DataFrame(index=pd.Index(genes)))


def transfer_labels(
    reference,
    query,
    *,
    label_key: str,
    method: str = "bgformer",
    key_added: str = "transferred_label",
    batch_key: str | None = None,
    random_state: int | None = 0,
    layer: str | None = None,
    min_confidence: float = 0.5,
    novelty_alpha: float = 0.01,
    representation: str = "encoder",
    features: str = "embedding",
    copy: bool = False,
    **model_kwargs: Any,
):
    """Name the cells of ``query`` with the cell types of a labelled ``reference``.

    Fits a :class:`LabelTransfer` (the embedding model on the reference genes shared with the query, a
    calibrated classifier on the reference embedding and labels, the novelty score) and classifies the query.
    Query labels, if any, are never read.

    Parameters
    ----------
    reference, query
        AnnData with raw counts (``layers["counts"]`` after :func:`sccluster.pp.prepare`, else ``X``, or
        ``layer``); genes matched by name.
    label_key
        ``obs`` column of the reference with its cell types.
    method
        ``"bgformer"`` (default), ``"siamese"`` or ``"pca"`` (see :class:`LabelTransfer`).
    key_added
        Prefix of the query slots written (default ``"transferred_label"``).
    batch_key, min_confidence, novelty_alpha, representation, features
        See :class:`LabelTransfer`.
    random_state
        Seed (default 0).
    layer
        Layer of raw counts in both, if not the default.
    copy
        Write into a copy of ``query`` and return it with the model.
    **model_kwargs
        Hyperparameters of the embedding model.

    Returns
    -------
    The fitted :class:`LabelTransfer` (save it to classify further queries), or ``(query copy, model)`` with
    ``copy``. Writes ``query.obs[key_added]`` (categorical: the reference types and ``"unknown"``),
    ``obs[key_added + "_predicted"]`` (the best type, also for unknown cells), ``obs[key_added +
    "_confidence"]`` (calibrated probability of the best type), ``obs[key_added + "_novelty"]`` (above 1:
    unlike every reference type), ``obsm[key_added + "_proba"]`` (``(n, n_types)``), ``obsm["X_" +
    key_added]`` (the query embedding) and ``uns[key_added]`` (method, label_key, classes, counts, thresholds).
    """
    check_adata(reference, "reference")
    check_adata(query, "query")
    if not isinstance(key_added, str) or not key_added:
        msg = f"key_added must be a non-empty string, got {key_added!r}"
        raise InputError(msg)
    transfer = LabelTransfer(label_key, method=method, batch_key=batch_key, min_confidence=min_confidence,
                             novelty_alpha=novelty_alpha, representation=representation,
                             features=features, random_state=random_state, **model_kwargs)  # fmt: skip
    result = transfer.fit_predict(reference, query, layer=layer)
    if copy:
        query = query.to_memory() if on_disk(query) else query.copy()
    write_transfer(query, result, transfer, key_added)
    return (query, transfer) if copy else transfer


def write_transfer(query, result: TransferResult, transfer: LabelTransfer, key_added: str) -> None:
    """Write a :class:`TransferResult` into ``query`` under ``key_added`` (see :func:`transfer_labels`)."""
    categories = (
        [*map(str, result.classes), UNKNOWN] if UNKNOWN not in set(result.classes) else list(result.classes)
    )
    query.obs[key_added] = pd.Categorical(result.labels.astype(str), categories=categories)
    query.obs[f"{key_added}_predicted"] = pd.Categorical(
        result.predicted.astype(str), categories=list(result.classes)
    )
    query.obs[f"{key_added}_confidence"] = result.confidence
    query.obs[f"{key_added}_novelty"] = result.novelty
    query.obsm[f"{key_added}_proba"] = result.proba
    query.obsm[f"X_{key_added}"] = result.embedding
    counts = pd.Series(result.labels).value_counts()
    query.uns[key_added] = {
        "method": transfer.method, "label_key": transfer.label_key, "batch_key": transfer.batch_key,
        "classes": np.asarray(result.classes, dtype=object),
        "n_cells": np.asarray([int(counts.get(c, 0)) for c in categories], dtype=np.int64),
        "labels": np.asarray(categories, dtype=object), "n_unknown": int(result.unknown.sum()),
        "min_confidence": float(transfer.min_confidence), "novelty_alpha": float(transfer.novelty_alpha),
        "temperature": float(transfer.classifier_.temperature), "n_reference": int(transfer.n_reference_),
        "seed": int(transfer.seed_), "sccluster_version": __version__,
    }  # fmt: skip
