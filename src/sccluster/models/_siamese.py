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
  rather than chasing the network at every step (``docs/decisions/0016-clustering-target-snapshot.md``).
- **Schedule.** Adam, one optimiser for both phases (:class:`sccluster.train.Trainer`); by default the
  learning rate falls along a half cosine to about zero within each phase (``lr_schedule``), so the
  start and the readout come from settled networks.
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

from sccluster import _distributed as distributed
from sccluster._errors import InputError
from sccluster._utils import make_generators, resolve_device
from sccluster.data import CountSource, Scaler, read_batches

from . import _parallel as parallel
from ._config import config_params
from ._deep import DeepClusterModel
from ._siamese_config import SiameseConfig
from ._siamese_data import embed_cells, soft_assignments
from ._siamese_features import Projector, build_cell_graph, new_cell_features, project_all

logger = logging.getLogger(__name__)


@config_params(SiameseConfig)
class SiameseClu(DeepClusterModel):
    """scSiameseClu made scalable and label-free (see the module docstring).

    Parameters
    ----------
    n_clusters
        Number of clusters; ``None`` estimates it without labels (Leiden on the pretrained
        embedding, ``resolution``).
    {config}
    random_state
        Seed of numpy, torch, the PCA, the kNN graph and k-means (``None`` draws one).
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    {checkpoints}
    """

    name: ClassVar[str] = "siamese"

    # ------------------------------------------------------------------ fit
    def _fit(self, adata, *, layer: str | None) -> None:
        from sccluster import graph
        from sccluster.ot import BalancedTarget
        from sccluster.pp import select_genes
        from sccluster.train import OptimizerSpec, Phase, Trainer

        from ._siamese_data import GraphData, SiameseBatches

        cfg = self._config()
        inp, gc, opt, head = cfg.input, cfg.graph, cfg.optimisation, cfg.clustering
        if adata.n_obs < 3:
            msg = f"SiameseClu needs at least 3 cells, got {adata.n_obs}"
            raise InputError(msg)
        ctx, device = distributed.setup(resolve_device(self.device))
        seed = self.seed_
        rng, gen = make_generators(seed)
        data_rng, data_gen = parallel.data_generators(ctx, seed, (rng, gen))  # this rank's batches
        # before any work: a bad folder fails fast
        checkpoint = self._checkpointer(adata, layer, (data_rng, data_gen), ctx)
        batches = None if inp.batch_key is None else read_batches(adata, inp.batch_key)  # before any work
        self.batches_ = None if batches is None else list(batches.categories)
        codes = None if batches is None else batches.codes
        self.batch_codes_ = None if codes is None else codes.astype(np.int32)
        self.genes_ = np.asarray(select_genes(adata, inp.n_top_genes, layer=layer), dtype=object)
        source = CountSource(adata, genes=self.genes_, layer=layer, batch_codes=codes)
        self.reference_total_ = source.reference_total

        n_batches = None if batches is None else batches.n_batches
        self.scaler_, self.projector_, x0, adj, sigma, h_full = parallel.once(
            ctx, rng, lambda: build_cell_graph(source, inp.max_value, gc, codes, n_batches, seed)
        )
        # torch's global generator was seeded by ClusterModel.fit and nothing above draws from it
        self.net_ = self._new_net(len(self.genes_), x0.shape[1], 1, self._n_batches()).to(device)
        cells = parallel.shard_indices(ctx, seed, source.n_obs, None)
        data = SiameseBatches(
            source, self.scaler_, GraphData(x0, adj, h_full), cfg, data_rng, data_gen, device, cells=cells
        )
        spec = OptimizerSpec(
            "adam", opt.lr, schedule=opt.lr_schedule, scope="run"
        )  # one Adam for both phases
        trainer = Trainer(self.net_, spec, name="SiameseClu", checkpoint=checkpoint, parallel=ctx)
        epoch = data.steps_per_epoch
        pretrain_steps = parallel.steps(ctx, opt.pretrain_steps)
        trainer.run(Phase("pretrain", pretrain_steps, data.phase(), log_every=epoch))

        use_target = opt.cluster_steps > 0 and cfg.ablation.use_sinkhorn
        target_kwargs = {
            "power": head.sinkhorn_power, "momentum": head.proportion_momentum, "n_iters": head.sinkhorn_iters,
            "marginal_relaxation": head.marginal_relaxation, "estimate": head.proportion_estimate,
        }  # fmt: skip

        def start() -> dict:
            z = self._embed(source, h_full)
            self._start_centers(self.net_, z, init=head.init)
            out = {
                "centers": self.net_.centers.detach().cpu(),
                "resolution": (self.resolution_, self.resolution_table_),
            }
            if use_target:  # the proportions only (K numbers) travel to the other ranks
                out["target"] = BalancedTarget.from_log_q(
                    self._log_q(z), device, **target_kwargs
                ).state_dict()
            return out

        started = parallel.once(ctx, rng, start)
        if not ctx.is_main:
            self.net_.set_centers(started["centers"])
            self.resolution_, self.resolution_table_ = started["resolution"]
        target = None
        if opt.cluster_steps > 0:
            if use_target:
                target = BalancedTarget.from_state_dict(started["target"], device, **target_kwargs)
            self.net_.cluster_target = target
            interval = min(head.target_interval, epoch)
            phase = Phase(
                "cluster",
                parallel.steps(ctx, opt.cluster_steps),
                data.phase(),
                log_every=epoch,
                snapshot_interval=interval,
                stateful={} if target is None else {"cluster_target": target},
            )
            trainer.run(phase)
            self.net_.cluster_target = None  # training state, not part of the fitted model
        z, log_q = parallel.sharded(ctx, source.n_obs, lambda idx: self._embed_log_q(source, h_full, idx))
        self.proportions_ = None if target is None else target.pi.float().cpu().numpy()
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
        batches = getattr(self, "batches_", None)
        return 0 if batches is None else len(batches)

    def _new_net(self, n_genes: int, n_graph: int, n_clusters: int, n_batches: int = 0):
        from sccluster.nn import SiameseNet

        p = self.params_  # the fit's hyperparameters, also after set_params
        return SiameseNet(
            n_genes, n_graph, p["n_latent"], p["n_hidden"], p["n_anchors"], n_clusters,
            use_fusion=p["use_fusion"], n_batches=n_batches, correlation_weight=p["correlation_weight"],
            cluster_weight=p["cluster_weight"], use_correlation=p["use_correlation"],
        )  # fmt: skip

    # ------------------------------------------------------------------ inference
    def _embed_log_q(self, source: CountSource, h: np.ndarray, indices: np.ndarray | None) -> tuple:
        """The embedding and ``log q`` of the cells at ``indices`` (all when ``None``)."""
        z = self._embed(source, h, indices=indices)
        return z, self._log_q(z)

    def _embed(
        self, source: CountSource, h: np.ndarray, scaler: Scaler | None = None, *, indices: np.ndarray | None = None
    ) -> np.ndarray:  # fmt: skip
        """Fused embedding of the cells of ``source`` (:func:`~sccluster.models._siamese_data.embed_cells`).

        ``scaler``: the model's (default) or its extension to batches not seen in training.
        """
        return embed_cells(self.net_, source, self.scaler_ if scaler is None else scaler, h, indices)

    def _log_q(self, z: np.ndarray) -> np.ndarray:
        return soft_assignments(self.net_, z)

    def _neighbor_index(self):
        """Index over the training cells' PCA scores, built on the first ``predict``/``transform`` and kept.

        Batch-balanced (one index per training batch) when the model was fitted with more than one batch.
        It is not saved with the model (it is rebuilt from the saved scores after ``load``).
        """
        from sccluster import graph

        if getattr(self, "_index", None) is None:
            k = self.params_["n_neighbors"]
            x0 = self.x0_.astype(np.float32)
            if self._n_batches() > 1:
                self._index = graph.BalancedNeighborIndex(x0, self.batch_codes_, k, seed=self.seed_)
            else:
                self._index = graph.NeighborIndex(x0, k, seed=self.seed_)
        return self._index

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
            **(
                {}
                if self.batches_ is None
                else {"batches": list(self.batches_), "batch_codes": self.batch_codes_}
            ),
        }

    def _set_state(self, state: dict[str, Any], device: str) -> None:
        self.genes_ = np.asarray(state["genes"], dtype=object)
        self.reference_total_ = state["reference_total"]
        self.scaler_ = Scaler.from_state_dict(state["scaler"])
        self.projector_ = Projector.from_state_dict(state["projector"])
        self.x0_, self.h_, self.sigma_, self.degree_ = (
            state["x0"],
            state["h"],
            state["sigma"],
            state["degree"],
        )
        self._index = None
        self.proportions_ = state["proportions"]
        # absent from files of models without batch_key (and of older versions): no batches
        self.batches_, self.batch_codes_ = state.get("batches"), state.get("batch_codes")
        self.net_ = self._new_net(len(self.genes_), self.x0_.shape[1], state["n_clusters"], self._n_batches())
        self.net_.load_state_dict(state["net"])
        self.net_.to(resolve_device(device))
        self.net_.eval()
