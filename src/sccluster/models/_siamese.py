"""SiameseClu: dual augmentation, Siamese encoders, gated fusion and optimal-transport clustering.

A scalable, label-free re-implementation of scSiameseClu (IJCAI 2025). Design:

- **Features and graph.** Scaled HVG expression (``data.Scaler``) and its PCA (fitted once on a
  seeded subsample, stored). A sparse symmetric kNN graph on the PCA scores (adaptive-bandwidth
  weights), normalised as ``D^-1/2 (A+I) D^-1/2``.
- **Decoupled graph encoder.** Graph views are PPR diffusions ``h ← (1−α)Âh + αx₀`` of the PCA
  scores by sparse power iteration over the whole graph, recomputed once per epoch on two
  independently edge-dropped copies (lowest-similarity edges first); mini-batches of cells then
  read rows of these features, so the GNN costs ``O(steps · nnz · p)`` per epoch and no batch needs
  its subgraph.
- **Siamese fusion.** Shared-weight MLP encoders over two expression views (multiplicative noise,
  additive Gaussian noise of sd ``noise_std``, gene masking) and two graph views; sample-level
  (``B x B``) and feature-level (``d x d``) cross-view correlation losses; a gating network fuses
  the two encoders, then ``z = z_l + α·AnchorAttention(z_l)`` adds global structure through ``m``
  anchors.
- **Losses.** ZINB of the raw counts with size factors; graph reconstruction (PCA scores plus
  sampled edges vs random cells); after pretraining, KL(P‖Q) with Q Student-t to learned centres
  (initialised on the fused embedding by ``initial_clusters``) and P from log-domain Sinkhorn on
  each mini-batch, columns = running (EMA) estimate of the cluster proportions (the masses of the
  sharpened assignments, ``proportion_estimate``). The Q that P is
  computed from comes from a frozen copy of the network on the un-augmented views, renewed with
  the graph views once per epoch (``target_interval``), so P is refreshed every epoch throughout
  rather than chasing the network at every step. Measured without labels on pbmc_4k (k = 8, seeds
  0 and 1), this is neutral here, unlike in BGFormer: the two seeds agree at ARI 0.84 either way
  and the stage keeps 0.82-0.83 of its initial partition (on upsampled cells, 10k-1M, it raised the
  mean ARI of the scale study and widened its seed spread).
- **Schedule.** Adam; by default the learning rate falls along a half cosine to about zero within each
  phase (``lr_schedule``), so the start and the readout come from settled networks.
- **Readout.** argmax of Q after the last step (no label-based model selection).

With ``batch_key`` (donors, samples, lanes or conditions in ``obs[batch_key]``), as in :class:`BGFormer`:
the expression of each cell is z-scored with its own batch's gene statistics, before the PCA and before
the expression encoder; the kNN graph is batch-balanced (each cell's neighbours are its
``n_neighbors // n_batches`` nearest cells in *every* batch, at least one, in the spirit of BBKNN;
:class:`sccluster.graph.BalancedNeighborIndex`), so its diffusions mix the batches; and the ZINB decoder
is conditioned on the one-hot batch. Neither encoder takes the batch. New cells are attached to the
training graph by the same balanced rule over the training batches; cells of a batch not seen in
training are scaled with their own batch's statistics when it has at least
:data:`sccluster.data.MIN_NEW_BATCH_CELLS` cells, else with the pooled training statistics (a warning
either way).

Saved with the model (besides weights, genes, scaler and PCA): the training cells' PCA scores and
PPR features as float16 and their kNN bandwidths and degrees, so ``predict`` can attach new cells to
the training graph under its normalisation (``2 · n · n_pcs`` half floats: 200 MB for 1M cells with
50 PCs), and with ``batch_key`` the training batches and each training cell's batch code.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from .._errors import InputError
from .._utils import make_generators, resolve_device
from ..data import CountSource, Scaler, read_batches
from ..data._batches import source_for_new_cells
from ..ot._balanced import ESTIMATES
from ._base import ClusterModel
from ._init_clusters import INITS, check_resolution, initial_clusters
from ._params import check_choice, check_flag, check_max_value, check_number
from ._schedule import LR_SCHEDULES
from ._siamese_features import CHUNK, Projector, fit_projector, new_cell_features, project_all

logger = logging.getLogger(__name__)



class SiameseClu(ClusterModel):
    """scSiameseClu made scalable and label-free (see the module docstring).

    Parameters
    ----------
    n_clusters
        Number of clusters; ``None`` estimates it without labels (Leiden on the pretrained
        embedding, ``resolution``).
    n_neighbors, graph_weights
        kNN graph size and edge weighting (``"adaptive"`` or ``"binary"``).
    n_pcs
        PCA components of the graph features.
    ppr_alpha, ppr_steps
        Teleport probability and power-iteration steps of the PPR diffusion.
    edge_drop, feature_noise, gene_mask
        Augmentation: fraction of edges dropped per graph view, std of the multiplicative
        N(1, σ²) expression noise, fraction of genes masked per expression view.
    noise_std
        Std of additive Gaussian noise on the scaled expression of each view (the denoising
        autoencoder's corruption, as BGFormer's ``noise_std``); ``0`` adds none. Default 2.5 (why:
        ``docs/decisions/0005-siamese-noise-std-2.5.md``).
    n_latent, n_hidden, n_anchors
        Embedding width, first hidden width, anchor tokens of the global step.
    sinkhorn_iters, sinkhorn_power, proportion_momentum
        Sinkhorn iterations per batch, sharpening power of Q in the OT target, EMA momentum of
        the cluster-proportion estimate (per step).
    marginal_relaxation
        ``None`` (default): balanced Sinkhorn, the target's cluster masses equal the estimated
        proportions. A positive ``ρ``: unbalanced Sinkhorn that only pulls them towards the
        proportions with weight ``ρ`` (see :class:`sccluster.ot.BalancedTarget`: the balanced
        target evens cluster sizes out).
    proportion_estimate
        What the running proportions track: ``"sharpened"`` (default), the mean of
        ``q^sinkhorn_power`` normalised per cell, the cluster masses of the target before its column
        constraint (see :class:`sccluster.ot.BalancedTarget`); ``"soft"``, the mean soft assignment
        ``q``, which evens cluster sizes out (why: ``docs/decisions/0008-siamese-proportion-estimate-sharpened.md``).
    correlation_weight, cluster_weight
        Weights of the cross-correlation losses and of the clustering KL.
    target_interval
        Most clustering steps between refreshes of the network snapshot that computes the target P
        from the clean inputs (DEC's update interval); it is also refreshed with the graph views,
        once per epoch. ``1`` recomputes P from the network being trained at every step.
    lr, batch_size, pretrain_steps, cluster_steps
        Adam learning rate, cells per mini-batch, optimiser steps before / after centre init.
    lr_schedule
        ``"cosine"`` (default): within each phase (pretraining, then the clustering stage) the rate
        falls from ``lr`` to about zero along a half cosine, so the embedding that the centres are
        started on, and the network that the labels are read from, are the end of a settled descent
        rather than one iterate of a constant-rate walk. ``"constant"``: ``lr`` at every step (why the
        default: ``docs/decisions/0011-siamese-lr-schedule-cosine.md``).
    n_top_genes, max_value
        Highly variable genes used, clip bound after z-scoring.
    init
        How the starting centres are found when ``n_clusters`` is given: ``"kmeans"`` (default), k-means
        on the pretrained embedding; ``"leiden"``, the means of a Leiden partition of its kNN graph with
        ``n_clusters`` communities (resolution searched by bisection; k-means when none gives that many;
        no labels). With ``n_clusters=None`` the start is always Leiden.
    resolution
        Leiden resolution when ``n_clusters=None``, or ``"auto"`` (default): chosen by subsample
        stability, as in :class:`BGFormer` (:func:`sccluster.models.choose_resolution`; no labels),
        kept in ``resolution_`` and ``resolution_table_`` (why the default:
        ``docs/decisions/0007-siamese-resolution-auto.md``).
    use_augmentation, use_correlation, use_fusion, use_sinkhorn
        Ablation switches: no augmentation / no correlation losses / plain average of the two
        encoders (no gate, no anchor attention) / DEC target instead of Sinkhorn.
    batch_key
        Column of ``obs`` naming each cell's batch (donor, sample, lane, condition), or ``None`` (default:
        no batch covariate; training and results are exactly those of a model without it). Every cell
        needs a value and every batch at least 2 cells; one batch is allowed (with a warning) but has no
        effect. Given: per-batch scaling of the expression (and so of the PCA), a batch-balanced kNN graph
        (``n_neighbors // n_batches`` neighbours from every batch, at least 1) and a ZINB decoder conditioned
        on the batch, so that batches do not become clusters (module docstring). :meth:`predict` and
        :meth:`transform` read the same column: new cells join the graph by the same balanced rule; cells
        of batches not seen in training get a warning and are scaled with their batch's own statistics
        (at least 50 cells) or the pooled training statistics. The training batches are in ``batches_``
        and saved with the model. Labels are never involved.
    random_state, device
        Seed (numpy, torch, PCA, kNN, k-means) and ``"auto"``/``"cpu"``/``"cuda"``.
    """

    name: ClassVar[str] = "siamese"
    supports_predict: ClassVar[bool] = True
    supports_save: ClassVar[bool] = True

    def __init__(
        self,
        n_clusters: int | None = None,
        *,
        n_neighbors: int = 15,
        graph_weights: str = "adaptive",
        n_pcs: int = 50,
        ppr_alpha: float = 0.15,
        ppr_steps: int = 10,
        edge_drop: float = 0.2,
        feature_noise: float = 0.1,
        gene_mask: float = 0.1,
        noise_std: float = 2.5,
        n_latent: int = 32,
        n_hidden: int = 256,
        n_anchors: int = 32,
        sinkhorn_iters: int = 50,
        sinkhorn_power: float = 2.0,
        proportion_momentum: float = 0.99,
        marginal_relaxation: float | None = None,
        proportion_estimate: str = "sharpened",
        correlation_weight: float = 1.0,
        cluster_weight: float = 1.0,
        target_interval: int = 100,
        lr: float = 1e-3,
        lr_schedule: str = "cosine",
        batch_size: int = 512,
        pretrain_steps: int = 300,
        cluster_steps: int = 200,
        n_top_genes: int = 2000,
        max_value: float | None = 10.0,
        init: str = "kmeans",
        resolution: float | str = "auto",
        use_augmentation: bool = True,
        use_correlation: bool = True,
        use_fusion: bool = True,
        use_sinkhorn: bool = True,
        batch_key: str | None = None,
        random_state: int | None = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(n_clusters, random_state=random_state)
        self.n_neighbors, self.graph_weights, self.n_pcs = n_neighbors, graph_weights, n_pcs
        self.ppr_alpha, self.ppr_steps = ppr_alpha, ppr_steps
        self.edge_drop, self.feature_noise, self.gene_mask = edge_drop, feature_noise, gene_mask
        self.noise_std = noise_std
        self.n_latent, self.n_hidden, self.n_anchors = n_latent, n_hidden, n_anchors
        self.sinkhorn_iters, self.sinkhorn_power, self.proportion_momentum = sinkhorn_iters, sinkhorn_power, proportion_momentum
        self.marginal_relaxation = marginal_relaxation
        self.proportion_estimate = proportion_estimate
        self.correlation_weight, self.cluster_weight = correlation_weight, cluster_weight
        self.target_interval = target_interval
        self.lr, self.lr_schedule, self.batch_size = lr, lr_schedule, batch_size
        self.pretrain_steps, self.cluster_steps = pretrain_steps, cluster_steps
        self.n_top_genes, self.max_value, self.resolution = n_top_genes, max_value, resolution
        self.init = init
        self.use_augmentation, self.use_correlation = use_augmentation, use_correlation
        self.use_fusion, self.use_sinkhorn = use_fusion, use_sinkhorn
        self.batch_key = batch_key
        self.device = device

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        check_number("n_neighbors", self.n_neighbors, 1, integer=True)
        check_number("n_pcs", self.n_pcs, 1, integer=True)
        check_number("ppr_alpha", self.ppr_alpha, 0.0, 1.0, lo_open=True)
        check_number("ppr_steps", self.ppr_steps, 0, integer=True)
        check_number("edge_drop", self.edge_drop, 0.0, 0.5)
        check_number("feature_noise", self.feature_noise, 0.0)
        check_number("gene_mask", self.gene_mask, 0.0, 0.9)
        check_number("noise_std", self.noise_std, 0.0)
        for name in ("n_latent", "n_hidden", "n_anchors", "sinkhorn_iters", "target_interval"):
            check_number(name, getattr(self, name), 1, integer=True)
        check_number("batch_size", self.batch_size, 2, integer=True)  # the correlation losses need two cells
        check_number("pretrain_steps", self.pretrain_steps, 1, integer=True)
        check_number("cluster_steps", self.cluster_steps, 0, integer=True)
        check_number("lr", self.lr, 0.0, lo_open=True)
        check_number("sinkhorn_power", self.sinkhorn_power, 0.0, lo_open=True)
        check_number("proportion_momentum", self.proportion_momentum, 0.0, 1.0)
        if self.marginal_relaxation is not None:
            check_number("marginal_relaxation", self.marginal_relaxation, 0.0, lo_open=True)
        check_number("correlation_weight", self.correlation_weight, 0.0)
        check_number("cluster_weight", self.cluster_weight, 0.0)
        check_resolution(self.resolution)
        check_choice("init", self.init, INITS)
        check_max_value(self.max_value)
        for name in ("use_augmentation", "use_correlation", "use_fusion", "use_sinkhorn"):
            check_flag(name, getattr(self, name))
        check_choice("proportion_estimate", self.proportion_estimate, ESTIMATES)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("graph_weights", self.graph_weights, ("adaptive", "binary"))

    # ------------------------------------------------------------------ fit
    def _fit(self, adata, *, layer: str | None) -> None:
        import torch

        from .. import graph
        from ..pp import select_genes
        from ._siamese_train import TrainConfig, TrainData, Trainer

        self._check_params()
        if adata.n_obs < 3:
            msg = f"SiameseClu needs at least 3 cells, got {adata.n_obs}"
            raise InputError(msg)
        device = resolve_device(self.device)
        seed = self.seed_
        rng, gen = make_generators(seed)
        batches = None if self.batch_key is None else read_batches(adata, self.batch_key)  # before any work
        self.batches_ = None if batches is None else list(batches.categories)
        codes = None if batches is None else batches.codes
        self.batch_codes_ = None if batches is None else codes.astype(np.int32)
        self.genes_ = np.asarray(select_genes(adata, self.n_top_genes, layer=layer), dtype=object)
        source = CountSource(adata, genes=self.genes_, layer=layer, batch_codes=codes)
        self.reference_total_ = source.reference_total
        if batches is None:
            self.scaler_ = Scaler.fit(source, max_value=self.max_value)
        else:
            self.scaler_ = Scaler.fit(source, max_value=self.max_value, batch_codes=codes, n_batches=batches.n_batches)
        self.projector_ = fit_projector(source, self.scaler_, self.n_pcs, seed)
        x0 = project_all(source, self.scaler_, self.projector_)
        k_nn = min(self.n_neighbors, adata.n_obs - 1)
        adj, sigma = graph.knn_graph(x0, k_nn, weights=self.graph_weights, seed=seed, batch_codes=codes)
        h_full = graph.ppr_propagate(graph.normalize_adjacency(adj), x0, alpha=self.ppr_alpha, steps=self.ppr_steps)
        cfg = TrainConfig(
            batch_size=self.batch_size, lr=self.lr, lr_schedule=self.lr_schedule, pretrain_steps=self.pretrain_steps, cluster_steps=self.cluster_steps,
            ppr_alpha=self.ppr_alpha, ppr_steps=self.ppr_steps, edge_drop=self.edge_drop, feature_noise=self.feature_noise,
            gene_mask=self.gene_mask, noise_std=self.noise_std, sinkhorn_iters=self.sinkhorn_iters, sinkhorn_power=self.sinkhorn_power,
            proportion_momentum=self.proportion_momentum, marginal_relaxation=self.marginal_relaxation,
            proportion_estimate=self.proportion_estimate, correlation_weight=self.correlation_weight,
            cluster_weight=self.cluster_weight, target_interval=self.target_interval,
            use_augmentation=self.use_augmentation,
            use_correlation=self.use_correlation, use_sinkhorn=self.use_sinkhorn,
        )  # fmt: skip
        data = TrainData(source=source, scaler=self.scaler_, x0=x0, adj=adj, h_full=h_full)
        # torch's global generator was seeded by ClusterModel.fit and nothing above draws from it
        self.net_ = self._new_net(len(self.genes_), x0.shape[1], 1, self._n_batches()).to(device)
        trainer = Trainer(self.net_, data, cfg, rng, gen, device)
        trainer.run(self.pretrain_steps, cluster=False, desc="SiameseClu pretrain")
        z = self._embed(source, h_full)
        init = initial_clusters(z, self.n_clusters, seed, resolution=self.resolution, init=self.init)
        self.resolution_, self.resolution_table_ = init.resolution, init.resolution_table
        self.net_.set_centers(torch.as_tensor(init.centers))
        if self.cluster_steps > 0:
            trainer.opt.add_param_group({"params": [self.net_.centers]})
            if self.use_sinkhorn:
                trainer.init_proportions(self._log_q(z))
            trainer.run(self.cluster_steps, cluster=True, desc="SiameseClu cluster")
        z = self._embed(source, h_full)
        log_q = self._log_q(z)
        self.proportions_ = None if trainer.pi is None else trainer.pi.float().cpu().numpy()
        self.history_ = trainer.history
        self.embedding_ = z
        self.soft_assignments_ = np.exp(log_q)
        self.labels_ = log_q.argmax(axis=1)
        self.x0_ = x0.astype(np.float16)
        self.h_ = h_full.astype(np.float16)
        self.sigma_ = sigma
        self.degree_ = graph.graph_degrees(adj)
        self._index = None

    def _reorder_clusters(self, order: np.ndarray) -> None:
        """``proportions_`` (the target's running estimate of the cluster proportions) in label order."""
        if self.proportions_ is not None:
            p = self.proportions_[order]
            self.proportions_ = p / p.sum()

    def _n_batches(self) -> int:
        """Batches the decoder is conditioned on (0 without ``batch_key``)."""
        return 0 if getattr(self, "batches_", None) is None else len(self.batches_)

    def _new_net(self, n_genes: int, n_graph: int, n_clusters: int, n_batches: int = 0):
        from ..nn._siamese_module import SiameseNet

        return SiameseNet(
            n_genes, n_graph, self.n_latent, self.n_hidden, self.n_anchors, n_clusters, use_fusion=self.use_fusion,
            n_batches=n_batches,
        )  # fmt: skip

    # ------------------------------------------------------------------ inference
    def _embed(self, source: CountSource, h: np.ndarray, scaler: Scaler | None = None) -> np.ndarray:
        """Fused embedding ``(n, d)`` of all cells of ``source`` given their graph features ``h``.

        ``scaler``: the model's (default) or its extension to batches not seen in training.
        """
        import torch

        scaler = self.scaler_ if scaler is None else scaler
        dev = self.net_.alpha.device
        self.net_.eval()
        out = []
        with torch.no_grad():
            for start in range(0, source.n_obs, CHUNK):
                b = source.batch(np.arange(start, min(start + CHUNK, source.n_obs)))
                counts = torch.as_tensor(b.counts, device=dev)
                sf = torch.as_tensor(b.size_factors, device=dev)
                codes = None if b.batch_codes is None else torch.as_tensor(b.batch_codes, device=dev)
                x = scaler.transform_torch(counts, sf, codes)
                hb = torch.as_tensor(np.asarray(h[b.index], dtype=np.float32), device=dev)
                out.append(self.net_.embed(x, hb).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def _log_q(self, z: np.ndarray) -> np.ndarray:
        import torch

        dev = self.net_.alpha.device
        with torch.no_grad():
            parts = [self.net_.log_q(torch.as_tensor(z[i : i + CHUNK], device=dev)).cpu().numpy() for i in range(0, len(z), CHUNK)]
        return np.concatenate(parts).astype(np.float64)

    def _neighbor_index(self):
        """Index over the training cells' PCA scores, built on the first ``predict``/``transform`` and kept.

        Batch-balanced (one index per training batch) when the model was fitted with more than one batch.
        It is not saved with the model (it is rebuilt from the saved scores after ``load``).
        """
        from .. import graph

        if getattr(self, "_index", None) is None:
            k = self.params_["n_neighbors"]
            x0 = self.x0_.astype(np.float32)
            if self._n_batches() > 1:
                self._index = graph.BalancedNeighborIndex(x0, self.batch_codes_, k, seed=self.seed_)
            else:
                self._index = graph.NeighborIndex(x0, k, seed=self.seed_)
        return self._index

    def _source(self, adata, layer: str | None) -> tuple[CountSource, Scaler]:
        """The counts of new cells and the scaler for them (extended to batches not seen in training)."""
        return source_for_new_cells(
            adata, genes=self.genes_, layer=layer, reference_total=self.reference_total_, scaler=self.scaler_,
            batch_key=self.params_.get("batch_key"), training_batches=self.batches_,
        )  # fmt: skip

    def _new_embedding(self, adata, layer: str | None) -> np.ndarray:
        source, scaler = self._source(adata, layer)
        x0_new = project_all(source, scaler, self.projector_)
        fitted = self.params_  # the graph of the fit, even after set_params
        if fitted["ppr_steps"] == 0:  # undiffused graph view, as in training: no neighbours needed
            return self._embed(source, x0_new, scaler)
        h = new_cell_features(
            self._neighbor_index(), self.sigma_, self.degree_, self.h_, x0_new,
            n_neighbors=fitted["n_neighbors"], alpha=fitted["ppr_alpha"], weights=fitted["graph_weights"],
        )  # fmt: skip
        return self._embed(source, h, scaler)

    def _transform(self, adata, *, layer: str | None) -> np.ndarray:
        return self._new_embedding(adata, layer)

    def _predict_proba(self, adata, *, layer: str | None) -> np.ndarray:
        return np.exp(self._log_q(self._new_embedding(adata, layer)))

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, Any]:
        return {
            "net": {k: v.detach().cpu() for k, v in self.net_.state_dict().items()},
            "n_clusters": int(self.net_.centers.shape[0]),
            "genes": list(self.genes_),
            "reference_total": self.reference_total_,
            "scaler": self.scaler_.state_dict(),
            "projector": self.projector_.state_dict(),
            "x0": self.x0_,
            "h": self.h_,
            "sigma": self.sigma_,
            "degree": self.degree_,
            "proportions": self.proportions_,
            **({} if self.batches_ is None else {"batches": list(self.batches_), "batch_codes": self.batch_codes_}),
        }

    def _set_state(self, state: dict[str, Any], device: str) -> None:
        self.genes_ = np.asarray(state["genes"], dtype=object)
        self.reference_total_ = state["reference_total"]
        self.scaler_ = Scaler.from_state_dict(state["scaler"])
        self.projector_ = Projector.from_state_dict(state["projector"])
        self.x0_, self.h_, self.sigma_, self.degree_ = state["x0"], state["h"], state["sigma"], state["degree"]
        self._index = None
        self.proportions_ = state["proportions"]
        # absent from files of models without batch_key (and of older versions): no batches
        self.batches_, self.batch_codes_ = state.get("batches"), state.get("batch_codes")
        self.net_ = self._new_net(len(self.genes_), self.x0_.shape[1], state["n_clusters"], self._n_batches())
        self.net_.load_state_dict(state["net"])
        self.net_.to(resolve_device(device))
        self.net_.eval()
