"""What the deep models share: configuration, the initial centres, and the counts of new cells."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sccluster._errors import InputError
from sccluster.data import CountSource, Scaler
from sccluster.data._batches import source_for_new_cells

from ._base import ClusterModel
from ._config import ModelConfig
from ._init_clusters import InitialClusters, initial_clusters

logger = logging.getLogger(__name__)

#: Parameters that say how a run is carried out, not what it computes (left out of its fingerprint).
RUN_ONLY = ("device", "checkpoint_dir", "checkpoint_every", "resume")


def check_checkpoint_params(checkpoint_dir: Any, every: Any, resume: Any) -> None:
    """:class:`InputError` for a bad ``checkpoint_dir``, ``checkpoint_every`` or ``resume``."""
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, str | os.PathLike):
        msg = f"checkpoint_dir must be a folder path or None, got {checkpoint_dir!r}"
        raise InputError(msg)
    if isinstance(every, bool) or not isinstance(every, int | np.integer) or every < 1:
        msg = f"checkpoint_every must be a positive integer (steps), got {every!r}"
        raise InputError(msg)
    if not isinstance(resume, bool | np.bool_):
        msg = f"resume must be True or False, got {resume!r}"
        raise InputError(msg)
    if resume and checkpoint_dir is None:
        msg = "resume=True needs checkpoint_dir, the folder of the run to continue"
        raise InputError(msg)


def checkpoint_folder(checkpoint_dir: str | os.PathLike, model: str, seed: int) -> Path:
    """The folder of one fit's checkpoints inside ``checkpoint_dir``: one per model and seed."""
    return Path(checkpoint_dir) / f"{model}-seed{seed}"


def run_fingerprint(
    model: str, params: dict[str, Any], seed: int, adata, layer: str | None, *, world_size: int = 1
) -> dict[str, Any]:
    """What identifies a training run for its checkpoints (values compare with ``==``)."""
    from sccluster._version import __version__

    def digest(names) -> str:
        h = hashlib.md5()
        for chunk in range(0, len(names), 100_000):
            h.update("\x00".join(map(str, names[chunk : chunk + 100_000])).encode())
        return h.hexdigest()

    return {
        "version": __version__,
        "model": model,
        "params": {k: repr(v) for k, v in sorted(params.items()) if k not in RUN_ONLY},
        "seed": int(seed),
        "data": (
            int(adata.n_obs),
            int(adata.n_vars),
            digest(adata.obs_names),
            digest(adata.var_names),
            layer,
        ),
        "world_size": int(world_size),
    }


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
    checkpoint_dir: str | None
    checkpoint_every: int
    resume: bool
    # learned in fit
    net_: Any  # the network (a torch module with a ZINB ``decoder``)
    genes_: list[str] | np.ndarray
    reference_total_: float | None
    scaler_: Scaler
    batches_: list[str] | None

    def validate_params(self) -> None:
        """Check the hyperparameters as set now, without data; :class:`InputError` names a bad one and its range."""
        self.config_class.from_params(self.get_params())
        check_checkpoint_params(self.checkpoint_dir, self.checkpoint_every, self.resume)

    def _checkpointer(self, adata, layer: str | None, generators, parallel: Any = None) -> Any:
        """The :class:`~sccluster.train.Checkpointer` of this fit (``None`` without ``checkpoint_dir``).

        Its folder is ``checkpoint_dir/<model>-seed<seed>``; the run is identified by the data (shape,
        cell and gene names, layer), the hyperparameters, the seed, the package version and the world size.
        In a data-parallel run (``parallel``, a :class:`sccluster._distributed.Context`) every rank keeps
        its own files (``phase0-pretrain.rank1.pt``): the weights are the same, its random streams are not.
        """
        p = self.params_
        check_checkpoint_params(p["checkpoint_dir"], p["checkpoint_every"], p["resume"])
        if p["checkpoint_dir"] is None:
            return None
        from sccluster.train import Checkpointer

        world, rank = (1, 0) if parallel is None else (parallel.world_size, parallel.rank)
        fingerprint = run_fingerprint(self.name, p, self.seed_, adata, layer, world_size=world)
        folder = checkpoint_folder(p["checkpoint_dir"], self.name, self.seed_)
        return Checkpointer(
            folder, fingerprint, every=p["checkpoint_every"], resume=p["resume"], generators=generators,
            suffix="" if world == 1 else f".rank{rank}",
        )  # fmt: skip

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

    def reconstruction_error(self, adata, *, layer: str | None = None, chunk: int = 1024) -> float:
        """Mean ZINB negative log-likelihood of the counts of ``adata``, decoded from their embedding.

        The cells are embedded as by :meth:`transform` (genes matched by name, clean input, network in
        eval mode) and their raw counts scored under the model's ZINB decoder; the result is the mean over
        all cell × gene entries (nats, lower is better; scvi-tools' ``get_reconstruction_error``). On cells
        held out of ``fit`` it measures how much of the expression the embedding keeps, without labels.
        Streams ``chunk`` cells at a time.
        """
        import torch

        from sccluster.nn import zinb_nll

        self._check_predict(adata)
        z = self._transform(adata, layer=layer)
        source, _ = self._source(adata, layer)
        net = self.net_
        device = next(net.parameters()).device
        was_training = net.training
        net.eval()
        total, entries, start = 0.0, 0, 0
        with torch.inference_mode():
            for batch in source.iter_batches(chunk):
                stop = start + len(batch.index)
                counts = torch.from_numpy(batch.counts).to(device)
                sf = torch.from_numpy(batch.size_factors).to(device)
                codes = None if batch.batch_codes is None else torch.from_numpy(batch.batch_codes).to(device)
                params = net.decoder(torch.from_numpy(z[start:stop]).to(device), sf, codes)
                total += float(zinb_nll(counts, *params)) * counts.numel()
                entries += counts.numel()
                start = stop
        net.train(was_training)
        return total / entries

    def _source(self, adata, layer: str | None) -> tuple[CountSource, Scaler]:
        """The counts of new cells and the scaler for them (extended to batches not seen in training)."""
        return source_for_new_cells(
            adata, genes=self.genes_, layer=layer, reference_total=self.reference_total_, scaler=self.scaler_,
            batch_key=self.params_.get("batch_key"), training_batches=self.batches_,
        )  # fmt: skip
