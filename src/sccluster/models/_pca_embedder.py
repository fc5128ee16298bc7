"""A PCA embedding that is fitted on one dataset and projects new cells: the baseline of label transfer."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from sccluster._utils import resolve_seed
from sccluster._validation import check_adata
from sccluster.data import BatchCodes, CountSource, Scaler, read_batches
from sccluster.data._batches import source_for_new_cells
from sccluster.pp import select_genes

from ._params import check_number
from ._siamese_features import fit_projector, project_all

logger = logging.getLogger(__name__)

#: Most cells the PCA is fitted on (a seeded subsample; every cell is projected).
PCA_MAX_CELLS = 50_000


class PCAEmbedder:
    """PCA of the z-scored, clipped highly variable genes, fitted on reference cells, applied to new ones.

    The scanpy recipe (log-normalise, highly variable genes, z-score, clip at 10, PCA) with the
    statistics and loadings of the reference, so new cells are projected into the reference's space
    (as ``sc.tl.ingest`` does). Streamed by row chunks; the PCA is fitted on at most
    :data:`PCA_MAX_CELLS` cells.

    Parameters
    ----------
    n_pcs
        Principal components, >= 1 (default 50).
    n_top_genes
        Highly variable genes used, >= 1 (default 2000; the data's ``var["highly_variable"]`` when set).
    batch_key
        ``obs`` column of batches: genes are z-scored per batch (new batches of new cells with their own
        statistics from 50 cells on), as the deep models do. Default ``None``.
    random_state
        Seed of the PCA's subsample and randomized solver (default 0).
    """

    name = "pca"

    def __init__(self, *, n_pcs: int = 50, n_top_genes: int = 2000, batch_key: str | None = None,
                 random_state: int | None = 0) -> None:  # fmt: skip
        self.n_pcs = n_pcs
        self.n_top_genes = n_top_genes
        self.batch_key = batch_key
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as given to ``__init__``."""
        return {"n_pcs": self.n_pcs, "n_top_genes": self.n_top_genes, "batch_key": self.batch_key,
                "random_state": self.random_state}  # fmt: skip

    def fit(self, adata, *, layer: str | None = None) -> PCAEmbedder:
        """Fit the gene statistics and loadings on ``adata`` and set ``embedding_`` (its cells' scores)."""
        check_adata(adata)
        batches = None if self.batch_key is None else read_batches(adata, self.batch_key)
        return self.fit_batches(adata, batches, layer=layer)

    def fit_batches(self, adata, batches: BatchCodes | None, *, layer: str | None = None) -> PCAEmbedder:
        """:meth:`fit` with the batches already read (``None``: no batch covariate)."""
        check_number("n_pcs", self.n_pcs, 1, integer=True)
        check_number("n_top_genes", self.n_top_genes, 1, integer=True)
        seed = resolve_seed(self.random_state)
        self.genes_ = list(select_genes(adata, int(self.n_top_genes), layer=layer))
        codes = None if batches is None else batches.codes
        source = CountSource(adata, genes=self.genes_, layer=layer, batch_codes=codes)
        self.reference_total_ = source.reference_total
        self.scaler_ = Scaler.fit(
            source, batch_codes=codes, n_batches=None if batches is None else batches.n_batches
        )
        self.batches_ = None if batches is None else list(batches.categories)
        self.projector_ = fit_projector(source, self.scaler_, int(self.n_pcs), seed, max_cells=PCA_MAX_CELLS)
        self.embedding_ = project_all(source, self.scaler_, self.projector_)
        self.seed_ = seed
        return self

    def transform(self, adata, *, layer: str | None = None) -> np.ndarray:
        """PCA scores ``(n_obs, n_pcs)`` of the cells of ``adata`` (genes matched by name)."""
        check_adata(adata)
        source, scaler = source_for_new_cells(
            adata, genes=self.genes_, layer=layer, reference_total=self.reference_total_, scaler=self.scaler_,
            batch_key=self.batch_key, training_batches=self.batches_,
        )  # fmt: skip
        return project_all(source, scaler, self.projector_)

    def to_payload(self) -> dict[str, Any]:
        """The fitted state as plain arrays and numbers (for the transfer model's file)."""
        return {
            "class": "PCAEmbedder", "params": self.get_params(), "genes": self.genes_,
            "reference_total": self.reference_total_, "scaler": self.scaler_.state_dict(),
            "batches": self.batches_, "projector": self.projector_.state_dict(), "seed": self.seed_,
        }  # fmt: skip

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> PCAEmbedder:
        """The embedder :meth:`to_payload` described."""
        from ._siamese_features import Projector

        model = cls(**payload["params"])
        model.genes_ = list(payload["genes"])
        model.reference_total_ = payload["reference_total"]
        model.scaler_ = Scaler.from_state_dict(payload["scaler"])
        model.batches_ = payload["batches"]
        model.projector_ = Projector.from_state_dict(payload["projector"])
        model.seed_ = payload["seed"]
        return model
