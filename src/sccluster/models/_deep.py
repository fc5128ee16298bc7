"""What the deep models share: configuration, the initial centres, and the counts of new cells."""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import numpy as np

from sccluster.data import CountSource, Scaler
from sccluster.data._batches import source_for_new_cells

from ._base import ClusterModel
from ._config import ModelConfig
from ._init_clusters import InitialClusters, initial_clusters

logger = logging.getLogger(__name__)


class DeepClusterModel(ClusterModel):
    """Base of BGFormer and SiameseClu: a network pretrained, given centres, then trained to cluster.

    Subclasses are decorated with :func:`sccluster.models._config.config_params`, which sets
    :attr:`config_class` and the constructor.
    """

    supports_predict: ClassVar[bool] = True
    supports_save: ClassVar[bool] = True
    config_class: ClassVar[type[ModelConfig]]

    # a hyperparameter of every subclass (the constructor of config_params sets it)
    device: str
    # learned in fit
    genes_: list[str] | np.ndarray
    reference_total_: float | None
    scaler_: Scaler
    batches_: list[str] | None

    def validate_params(self) -> None:
        """Check the hyperparameters as set now, without data; :class:`InputError` names a bad one and its range."""
        self.config_class.from_params(self.get_params())

    def _config(self) -> Any:
        """The configuration of the current fit (from ``params_``); :class:`InputError` for a bad value."""
        return self.config_class.from_params(self.params_)

    def _start_centers(self, net, embedding: np.ndarray, *, init: str = "kmeans") -> InitialClusters:
        """Set ``net``'s centres from :func:`initial_clusters` on ``embedding`` (k-means or Leiden).

        Records ``resolution_`` and ``resolution_table_`` (when k was estimated).
        """
        import torch

        t0 = time.perf_counter()
        start = initial_clusters(
            embedding, self.n_clusters, self.seed_, resolution=self.params_["resolution"], init=init
        )
        self.resolution_, self.resolution_table_ = start.resolution, start.resolution_table
        net.set_centers(torch.from_numpy(np.asarray(start.centers)))
        logger.info(
            "%s: %d initial centres (%s) in %.1f s", self.name, start.centers.shape[0],
            "given" if self.n_clusters is not None else "estimated", time.perf_counter() - t0,
        )  # fmt: skip
        return start

    def _source(self, adata, layer: str | None) -> tuple[CountSource, Scaler]:
        """The counts of new cells and the scaler for them (extended to batches not seen in training)."""
        return source_for_new_cells(
            adata, genes=self.genes_, layer=layer, reference_total=self.reference_total_, scaler=self.scaler_,
            batch_key=self.params_.get("batch_key"), training_batches=self.batches_,
        )  # fmt: skip
