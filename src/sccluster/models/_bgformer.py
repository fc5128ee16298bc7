"""BGFormer: anchor-attention encoder, ZINB reconstruction of raw counts and a Student-t (DEC) head.

Training has two stages, each bounded by a fixed number of optimiser steps (independent of the
number of cells), run by :class:`sccluster.train.Trainer`: (1) denoising ZINB pretraining (Gaussian
noise on the scaled input, counts reconstructed from the noisy pass), optionally stopped early on the
clean-input ZINB loss of held-out cells with the best weights kept (``early_stopping``; no labels
involved); (2) ZINB + ``gamma``·KL(P‖Q), where Q are Student-t soft assignments of the clean pass to
learnable centres and P is a sharpened target computed per mini-batch from the batch's soft
assignments under a frozen snapshot of the network, refreshed every ``target_interval`` steps or every
pass over the cells, whichever comes first (DEC's target update interval; no full-data pass, so
training streams; why a snapshot: ``docs/decisions/0016-clustering-target-snapshot.md``). With
``target="balanced"`` P is the Sinkhorn plan of Q² whose column marginals are running estimates of the
cluster proportions (:class:`sccluster.ot.BalancedTarget`); with ``"dec"`` (default, as published) it
is the DEC target q²/f_k normalised per batch. DEC may empty centres that the data do not support, so
``n_clusters_`` can end below ``n_clusters``; ``"balanced"`` resists emptying centres but does not
forbid it. The clean and noisy passes share one batched forward. The reported model is the last step
(no labels anywhere). The centres start from :func:`initial_clusters` on the pretrained embedding, the
very space the Student-t kernel sees: k-means with ``n_clusters`` given, otherwise Leiden plus merging
of clusters under 0.5 % of the cells, which estimates k without labels.

With ``batch_key`` (donors, samples, lanes or conditions in ``obs[batch_key]``) the input of each cell
is z-scored with the gene statistics of its own batch (a batch's gene-wise shift of log expression is
removed before the encoder) and the ZINB decoder is conditioned on the batch (one-hot at its hidden
layer and at its mean, dispersion and dropout heads), so the embedding, and the clusters found in it,
need not encode the batch. The encoder never takes the batch: cells of a batch not seen in training
embed without any special path, scaled with their own batch's statistics when it has at least
:data:`sccluster.data.MIN_NEW_BATCH_CELLS` cells, else with the pooled training statistics.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from sccluster import _distributed as distributed
from sccluster._errors import InputError
from sccluster._utils import make_generators, resolve_device
from sccluster.data import CountSource, Scaler, read_batches
from sccluster.data._batches import stratified_indices
from sccluster.pp import select_genes

from . import _parallel as parallel
from ._bgformer_config import BGFormerConfig
from ._bgformer_data import (
    Validation,
    embed,
    init_anchors,
    split_validation,
    steps_per_epoch,
    training_batches,
)
from ._config import config_params
from ._deep import DeepClusterModel

logger = logging.getLogger(__name__)


@config_params(BGFormerConfig)
class BGFormer(DeepClusterModel):
    """Deep clustering with bipartite cell↔anchor attention (linear in the number of cells).

    Parameters
    ----------
    n_clusters
        Number of clusters, or ``None`` to estimate it without labels (Leiden on the pretrained
        embedding at ``resolution``, small clusters merged; the k found is ``n_clusters_``).
    {config}
    random_state
        Seed (``None`` draws one); same seed on the same machine gives the same labels.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    {checkpoints}
    """

    name = "bgformer"

    # a hyperparameter (the constructor of config_params sets it)
    max_fit_cells: int

    # ------------------------------------------------------------------ fitting
    def _arch(self, n_genes: int, n_clusters: int, n_batches: int = 0) -> dict:
        """Arguments of the network's shape (saved with the model)."""
        arch = {"n_genes": n_genes, "n_clusters": n_clusters}
        shape = ("d_model", "n_latent", "n_anchors", "n_heads", "n_layers", "dropout")
        arch.update({k: self.params_[k] for k in shape})
        if n_batches:  # only then: a model without batches builds (and saves) the network it always did
            arch["n_batches"] = n_batches
        return arch

    def _new_net(self, arch: dict):
        from sccluster.nn import BGFormerNet

        return BGFormerNet(**arch, gamma=self.params_["gamma"], vq_weight=self.params_["vq_weight"])

    def validate_params(self) -> None:
        """Check the hyperparameters as set now, without data; :class:`InputError` names a bad one and its range."""
        super().validate_params()
        self._check_fit_cells(self.max_fit_cells)

    def _check_fit_cells(self, max_fit_cells: int) -> None:
        if self.n_clusters is not None and self.n_clusters > max_fit_cells:
            msg = (
                f"n_clusters={self.n_clusters} is more than max_fit_cells={max_fit_cells}, the cells the "
                "centres are initialised on; raise max_fit_cells or ask for fewer clusters"
            )
            raise InputError(msg)

    def _fit(self, adata, *, layer: str | None) -> None:
        import torch

        from sccluster.ot import BalancedTarget
        from sccluster.train import OptimizerSpec, Phase, Trainer

        cfg = self._config()
        inp, opt, head = cfg.input, cfg.optimisation, cfg.clustering
        self._check_fit_cells(inp.max_fit_cells)
        ctx, device = distributed.setup(resolve_device(self.device))
        seed = self.seed_
        rng, gen = make_generators(seed)  # torch's global generator: seeded by ClusterModel.fit
        data_rng, data_gen = parallel.data_generators(ctx, seed, (rng, gen))  # this rank's batches
        # before any work: a bad folder fails fast
        checkpoint = self._checkpointer(adata, layer, (data_rng, data_gen), ctx)
        t0 = time.perf_counter()
        batches = None if inp.batch_key is None else read_batches(adata, inp.batch_key)  # before any work
        self.batches_ = None if batches is None else list(batches.categories)
        self.genes_ = list(select_genes(adata, inp.n_top_genes, layer=layer))
        codes = None if batches is None else batches.codes
        source = CountSource(adata, genes=self.genes_, layer=layer, batch_codes=codes)
        self.reference_total_ = source.reference_total
        n = source.n_obs
        fit_idx = None if n <= inp.max_fit_cells else np.sort(rng.choice(n, inp.max_fit_cells, replace=False))

        def fit_scaler() -> Scaler:
            if batches is None:
                return Scaler.fit(source, max_value=inp.max_value, indices=fit_idx)
            scaler_idx = None if fit_idx is None else stratified_indices(batches.codes, fit_idx, rng)
            return Scaler.fit(
                source, max_value=inp.max_value, indices=scaler_idx, batch_codes=batches.codes,
                n_batches=batches.n_batches,
            )  # fmt: skip

        self.scaler_ = parallel.once(ctx, rng, fit_scaler)
        n_batches = 0 if batches is None else batches.n_batches
        net = self._new_net(self._arch(len(self.genes_), 0, n_batches)).to(device)
        init_idx = np.sort(rng.choice(n, min(n, 10_000), replace=False))
        parallel.once(ctx, rng, lambda: init_anchors(net, source, self.scaler_, init_idx, seed, rng, device))
        parallel.sync_module(ctx, net)
        logger.info(
            "bgformer: %d cells, %d genes%s; setup in %.1f s", n, len(self.genes_),
            "" if batches is None else f", {n_batches} batches in obs[{inp.batch_key!r}]",
            time.perf_counter() - t0,
        )  # fmt: skip

        train_idx, validation = None, None
        if opt.early_stopping:
            train_idx, val_idx = split_validation(n, opt.validation_size, rng)
            if val_idx is not None:
                validation = Validation(source, self.scaler_, val_idx, device)
        spec = OptimizerSpec("adamw", opt.lr, opt.weight_decay, opt.lr_schedule, scope="phase")
        trainer = Trainer(net, spec, name="bgformer", checkpoint=checkpoint, parallel=ctx)

        def phase(name: str, n_steps: int, indices=None, **kwargs) -> Phase:
            shard = parallel.shard_indices(ctx, seed, n, indices)
            n_steps = parallel.steps(ctx, n_steps)
            data = training_batches(source, self.scaler_, opt.batch_size, data_rng, data_gen, device,
                                    noise_std=cfg.augmentation.noise_std, indices=shard)  # fmt: skip
            return Phase(name, n_steps, data, log_every=max(1, min(50, n_steps // 20)), **kwargs)

        n_train = n if train_idx is None else len(train_idx)
        n_pre = min(opt.pretrain_steps, opt.max_epochs * steps_per_epoch(n_train, opt.batch_size))
        t1 = time.perf_counter()
        trainer.run(phase("pretrain", n_pre, train_idx, validation=validation, patience=opt.patience))
        logger.info("bgformer: pretraining in %.1f s", time.perf_counter() - t1)

        def start() -> dict:
            emb, _ = embed(net, source, self.scaler_, device, indices=fit_idx)
            self._start_centers(net, emb)
            out = {
                "centers": net.centers.detach().cpu(),
                "resolution": (self.resolution_, self.resolution_table_),
            }
            if head.target == "balanced":
                with torch.no_grad():
                    log_q0 = net.log_q(torch.from_numpy(emb).to(device)).cpu().numpy()
                out["target"] = BalancedTarget.from_log_q(log_q0, device, **target_kwargs).state_dict()
            return out

        target_kwargs = {"momentum": head.proportion_momentum}

        started = parallel.once(ctx, rng, start)
        if not ctx.is_main:
            net.set_centers(started["centers"])
            self.resolution_, self.resolution_table_ = started["resolution"]
        if head.target == "balanced":  # every rank: the proportions rank 0 started from
            net.cluster_target = BalancedTarget.from_state_dict(started["target"], device, **target_kwargs)
        n_cluster = min(opt.cluster_steps, opt.max_epochs * steps_per_epoch(n, opt.batch_size))
        interval = min(head.target_interval, steps_per_epoch(n, opt.batch_size)) if head.gamma > 0 else None
        t3 = time.perf_counter()
        stateful = {} if net.cluster_target is None else {"cluster_target": net.cluster_target}
        trainer.run(phase("cluster", n_cluster, snapshot_interval=interval, stateful=stateful))
        logger.info("bgformer: clustering stage in %.1f s", time.perf_counter() - t3)
        net.cluster_target = None  # training state, not part of the fitted model

        self.net_ = net
        self.history_ = trainer.history
        emb, log_q = parallel.sharded(
            ctx, n, lambda idx: embed(net, source, self.scaler_, device, indices=idx, with_q=True)
        )
        q = np.exp(log_q, out=log_q)
        self.embedding_ = emb
        self.soft_assignments_ = q
        self.confidence_ = q.max(axis=1)
        self.labels_ = q.argmax(axis=1)

    # ------------------------------------------------------------------ inference
    def _predict_proba(self, adata, *, layer: str | None) -> np.ndarray:
        source, scaler = self._source(adata, layer)
        _, log_q = embed(self.net_, source, scaler, self._device(), with_q=True)
        return np.exp(log_q)

    def _transform(self, adata, *, layer: str | None) -> np.ndarray:
        source, scaler = self._source(adata, layer)
        emb, _ = embed(self.net_, source, scaler, self._device())
        return emb

    def _device(self):
        return next(self.net_.parameters()).device

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict:
        state = {
            "arch": self._arch(
                len(self.genes_), int(self.net_.centers.shape[0]), self.net_.decoder.n_batches
            ),
            "net": {k: v.detach().cpu() for k, v in self.net_.state_dict().items()},
            "genes": list(self.genes_),
            "scaler": self.scaler_.state_dict(),
            "reference_total": self.reference_total_,
        }
        if self.batches_ is not None:  # per-batch statistics are in the scaler's state
            state["batches"] = list(self.batches_)
        return state

    def _set_state(self, state: dict, device: str) -> None:
        dev = resolve_device(device)
        net = self._new_net(state["arch"])
        net.load_state_dict(state["net"])
        self.net_ = net.to(dev).eval()
        self.genes_ = list(state["genes"])
        self.scaler_ = Scaler.from_state_dict(state["scaler"])
        self.reference_total_ = state["reference_total"]
        self.batches_ = state.get("batches")  # absent from files of models without batch_key (and older ones)
