"""BGFormer: anchor-attention encoder, ZINB reconstruction of raw counts and a Student-t (DEC) head.

Training has two stages, each bounded by a fixed number of optimiser steps (independent of the
number of cells): (1) denoising ZINB pretraining (Gaussian noise on the scaled input, counts
reconstructed from the noisy pass), optionally stopped early on the clean-input ZINB loss of
held-out cells with the best weights kept (``early_stopping``; no labels involved); (2) ZINB +
``gamma``·KL(P‖Q), where Q are Student-t soft assignments of the clean pass to learnable centres and
P is a sharpened target computed per mini-batch from the batch's soft assignments under a frozen
snapshot of the network that is refreshed every ``target_interval`` steps or every pass over the
cells, whichever comes first (DEC's target update interval; no full-data pass, so training streams).
A target recomputed from the network being trained at every step chases itself: on pbmc_4k it moved
a third of the cells away from their initial k-means clusters and two seeds ended at ARI 0.59 *to
each other* (their initial clusters agreed at 0.90); with the snapshot the stage refines the initial
clusters and the seeds agree at 0.80 (no labels involved in either number). With
``target="balanced"`` P is the Sinkhorn plan of Q² whose column marginals are running estimates of
the cluster proportions (:class:`sccluster.ot.BalancedTarget`); with ``"dec"`` (default, as
published) it is the DEC target q²/f_k normalised per batch. DEC may empty centres that the data do
not support, so ``n_clusters_`` can end below ``n_clusters``; ``"balanced"`` resists emptying
centres but does not forbid it (a centre the data do not support can shrink to a few cells, rarely
to none). The clean and noisy passes share one batched forward. The reported model is the last step
(no labels anywhere). The centres start from :func:`initial_clusters` on the pretrained embedding,
the very space the Student-t kernel sees: k-means with ``n_clusters`` given, otherwise Leiden
plus merging of clusters under 0.5 % of the cells, which estimates k without labels, at a resolution
chosen per dataset by subsample stability (``resolution="auto"``, the default) or fixed by the user.

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
import math
import time

import numpy as np

from .._errors import InputError, TrainingError
from .._utils import make_generators, progress, resolve_device
from ..data import CountSource, Scaler, read_batches
from ..data._batches import source_for_new_cells, stratified_indices
from ..pp import select_genes
from ._base import ClusterModel
from ._init_clusters import check_resolution, initial_clusters, kmeans_centers
from ._params import check_choice, check_flag, check_max_value, check_number
from ._schedule import LR_SCHEDULES, phase_lr, set_lr

logger = logging.getLogger(__name__)


class BGFormer(ClusterModel):
    """Deep clustering with bipartite cell↔anchor attention (linear in the number of cells).

    Parameters
    ----------
    n_clusters
        Number of clusters, or ``None`` to estimate it without labels (Leiden on the pretrained
        embedding at ``resolution``, small clusters merged; the k found is ``n_clusters_``).
    n_anchors, n_layers, n_heads, d_model
        Anchors per block, stacked anchor blocks, attention heads, block width.
    n_latent
        Dimension of the embedding ``z`` (``embedding_``, ``transform``).
    dropout
        Dropout in the blocks and the decoder.
    noise_std
        Standard deviation of the Gaussian noise added to the scaled input of the reconstruction pass
        (``>= 0``; default 2.5, scDeepCluster's level; why: ``docs/decisions/0003-bgformer-noise-std-2.5.md``).
    lr, weight_decay
        AdamW learning rate and weight decay (both stages).
    lr_schedule
        ``"constant"`` (default): ``lr`` throughout; ``"cosine"``: within each stage (pretraining,
        clustering) the rate of every parameter falls along a half cosine from ``lr`` to about zero.
    batch_size
        Cells per mini-batch.
    pretrain_steps, cluster_steps
        Optimiser-step budgets of the two stages; each stage runs at most ``max_epochs`` passes over
        the cells, so small datasets take fewer steps.
    max_epochs
        Cap on passes over the data per stage.
    early_stopping
        Hold out ``validation_size`` of the cells (at most 4,096) from pretraining, evaluate their
        ZINB loss on the clean input every ``min(50, pretrain_steps // 20)`` steps, stop pretraining
        after ``patience`` evaluations without a new best and keep the best weights. The held-out
        cells join the clustering stage and get labels like every other cell. No labels are used.
        Skipped when fewer than 16 cells would be held out. Off by default: within the default
        budget the held-out loss is flat over the last few hundred steps on 2–4k-cell datasets, so
        stopping picks a point on a plateau at the price of 10 % of the training cells; it matters
        for long budgets on small datasets (on pbmc68k_reduced's 700 cells the held-out loss is
        lowest near step 250 and rises by 6 % by step 1,000).
    validation_size
        Fraction of the cells held out for early stopping.
    patience
        Evaluations without a lower validation loss before pretraining stops.
    gamma
        Weight of the KL clustering loss in stage 2.
    target_interval
        Most stage-2 steps between refreshes of the network snapshot that computes the target P
        (DEC's update interval); the snapshot is also refreshed at least once per pass over the
        cells. ``1`` recomputes P from the network being trained at every step.
    target
        Clustering target of stage 2: ``"dec"`` (published DEC target; may empty centres) or
        ``"balanced"`` (Sinkhorn with running cluster proportions; resists emptying centres, so
        ``n_clusters_`` nearly always equals ``n_clusters``).
    proportion_momentum
        Per-step EMA momentum of the cluster proportions of the balanced target.
    vq_weight
        Weight of the optional vector-quantisation term (anchors as a codebook: codebook +
        commitment loss, and ZINB reconstruction from the straight-through quantised input of the
        last block). ``0`` (default) disables it; the anchors are still learned through attention.
    n_top_genes
        Genes used: ``var["highly_variable"]`` when present, else this many highly variable genes.
    max_value
        Clip bound of the z-scored input.
    resolution
        Leiden resolution used to estimate k when ``n_clusters=None``, or ``"auto"`` (default): the
        finest resolution of a grid whose partitions are as reproducible across cell subsamples as the
        most reproducible one (:func:`sccluster.models.choose_resolution`; no labels). The resolution
        used is kept in ``resolution_`` and the stability of each resolution in ``resolution_table_``.
        It costs a few kNN graphs and about a hundred Leiden runs on at most 20,000 cells (about 10 s on
        4,000 cells, 90 s at the cap, one core; why the default: ``docs/decisions/0004-bgformer-resolution-auto.md``).
    max_fit_cells
        Seeded subsample size for fitting the scaler, the anchor and the centre initialisation on large
        data. Training batches and inference use every cell. With ``batch_key`` the scaler's subsample
        is topped up so each batch contributes at least ``min(its cells, 1000)`` cells.
    batch_key
        Column of ``obs`` naming each cell's batch (donor, sample, lane, condition), or ``None``
        (default: no batch covariate; training and results are exactly those of a model without it).
        Every cell needs a value and every batch at least 2 cells; one batch is allowed (with a warning)
        but has no effect. Given, each batch is z-scored with its own gene statistics and the ZINB
        decoder is conditioned on the batch, so that batches do not become clusters (module docstring).
        The same column is read by :meth:`predict` and :meth:`transform`: cells of batches not seen in
        training get a warning and are scaled with their batch's own statistics (at least 50 cells) or
        the pooled training statistics. The training batches are in ``batches_`` and saved with the
        model. Labels are never involved.
    random_state
        Seed (``None`` draws one); same seed on the same machine gives the same labels.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    """

    name = "bgformer"
    supports_predict = True
    supports_save = True

    def __init__(
        self,
        n_clusters: int | None = None,
        *,
        n_anchors: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        d_model: int = 128,
        n_latent: int = 32,
        dropout: float = 0.1,
        noise_std: float = 2.5,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        lr_schedule: str = "constant",
        batch_size: int = 256,
        pretrain_steps: int = 1000,
        cluster_steps: int = 500,
        max_epochs: int = 200,
        early_stopping: bool = False,
        validation_size: float = 0.1,
        patience: int = 5,
        gamma: float = 1.0,
        target_interval: int = 100,
        target: str = "dec",
        proportion_momentum: float = 0.99,
        vq_weight: float = 0.0,
        n_top_genes: int = 2000,
        max_value: float | None = 10.0,
        resolution: float | str = "auto",
        max_fit_cells: int = 50_000,
        batch_key: str | None = None,
        random_state: int | None = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(n_clusters, random_state=random_state)
        self.n_anchors = n_anchors
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.d_model = d_model
        self.n_latent = n_latent
        self.dropout = dropout
        self.noise_std = noise_std
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.batch_size = batch_size
        self.pretrain_steps = pretrain_steps
        self.cluster_steps = cluster_steps
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_size = validation_size
        self.patience = patience
        self.gamma = gamma
        self.target_interval = target_interval
        self.target = target
        self.proportion_momentum = proportion_momentum
        self.vq_weight = vq_weight
        self.n_top_genes = n_top_genes
        self.max_value = max_value
        self.resolution = resolution
        self.max_fit_cells = max_fit_cells
        self.batch_key = batch_key
        self.device = device

    # ------------------------------------------------------------------ fitting
    def _arch(self, n_genes: int, n_clusters: int, n_batches: int = 0) -> dict:
        arch = {
            "n_genes": n_genes,
            "d_model": self.d_model,
            "n_latent": self.n_latent,
            "n_anchors": self.n_anchors,
            "n_heads": self.n_heads,
            "n_layers": self.n_layers,
            "dropout": self.dropout,
            "n_clusters": n_clusters,
        }
        if n_batches:  # only then: a model without batches builds (and saves) the network it always did
            arch["n_batches"] = n_batches
        return arch

    def _fit(self, adata, *, layer: str | None) -> None:
        import torch

        from ..nn import BGFormerNet
        from ..ot import BalancedTarget

        check_params(self)
        device = resolve_device(self.device)
        seed = self.seed_
        rng, gen = make_generators(seed)  # torch's global generator: seeded by ClusterModel.fit
        t0 = time.perf_counter()
        batches = None if self.batch_key is None else read_batches(adata, self.batch_key)  # before any work
        self.batches_ = None if batches is None else list(batches.categories)
        self.genes_ = list(select_genes(adata, self.n_top_genes, layer=layer))
        codes = None if batches is None else batches.codes
        source = CountSource(adata, genes=self.genes_, layer=layer, batch_codes=codes)
        self.reference_total_ = source.reference_total
        n = source.n_obs
        fit_idx = None
        if n > self.max_fit_cells:
            fit_idx = np.sort(rng.choice(n, self.max_fit_cells, replace=False))
        if batches is None:
            self.scaler_ = Scaler.fit(source, max_value=self.max_value, indices=fit_idx)
        else:
            scaler_idx = None if fit_idx is None else stratified_indices(batches.codes, fit_idx, rng)
            self.scaler_ = Scaler.fit(
                source, max_value=self.max_value, indices=scaler_idx, batch_codes=batches.codes,
                n_batches=batches.n_batches,
            )  # fmt: skip
        n_batches = 0 if batches is None else batches.n_batches
        net = BGFormerNet(**self._arch(len(self.genes_), 0, n_batches)).to(device)
        init_idx = np.sort(rng.choice(n, min(n, 10_000), replace=False))
        init_anchors(net, source, self.scaler_, init_idx, seed, rng, device)
        logger.info(
            "bgformer: %d cells, %d genes%s; setup in %.1f s", n, len(self.genes_),
            "" if batches is None else f", {n_batches} batches in obs[{self.batch_key!r}]", time.perf_counter() - t0,
        )  # fmt: skip

        train_idx, validation = None, None
        if self.early_stopping:
            train_idx, val_idx = split_validation(n, self.validation_size, rng)
            if val_idx is not None:
                validation = Validation(source, self.scaler_, val_idx, device)
        n_train = n if train_idx is None else len(train_idx)
        pretrain_budget = self.max_epochs * _steps_per_epoch(n_train, self.batch_size)
        t1 = time.perf_counter()
        self.history_ += train_stage(
            self, net, source, "pretrain", min(self.pretrain_steps, pretrain_budget), rng, gen, device,
            indices=train_idx, validation=validation,
        )  # fmt: skip
        logger.info("bgformer: pretraining in %.1f s", time.perf_counter() - t1)
        budget = self.max_epochs * _steps_per_epoch(n, self.batch_size)

        t2 = time.perf_counter()
        emb, _ = embed(net, source, self.scaler_, device, indices=fit_idx)
        init = initial_clusters(emb, self.n_clusters, seed, resolution=self.resolution)
        centers = init.centers
        self.resolution_, self.resolution_table_ = init.resolution, init.resolution_table
        net.set_centers(torch.from_numpy(centers))
        logger.info(
            "bgformer: %d initial centres (%s) in %.1f s",
            centers.shape[0],
            "given" if self.n_clusters is not None else "estimated",
            time.perf_counter() - t2,
        )
        target = None
        if self.target == "balanced":
            with torch.no_grad():
                log_q0 = net.log_q(torch.from_numpy(emb).to(device)).cpu().numpy()
            target = BalancedTarget.from_log_q(log_q0, device, momentum=self.proportion_momentum)
        t3 = time.perf_counter()
        self.history_ += train_stage(
            self, net, source, "cluster", min(self.cluster_steps, budget), rng, gen, device, target=target
        )
        logger.info("bgformer: clustering stage in %.1f s", time.perf_counter() - t3)

        self.net_ = net
        emb, log_q = embed(net, source, self.scaler_, device, with_q=True)
        q = np.exp(log_q)
        self.embedding_ = emb
        self.soft_assignments_ = q
        self.confidence_ = q.max(axis=1)
        self.labels_ = q.argmax(axis=1)

    # ------------------------------------------------------------------ inference
    def _source(self, adata, layer: str | None) -> tuple[CountSource, Scaler]:
        """The counts of new cells and the scaler for them (extended to batches not seen in training)."""
        return source_for_new_cells(
            adata, genes=self.genes_, layer=layer, reference_total=self.reference_total_, scaler=self.scaler_,
            batch_key=self.params_.get("batch_key"), training_batches=self.batches_,
        )  # fmt: skip

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
            "arch": self._arch(len(self.genes_), int(self.net_.centers.shape[0]), self.net_.decoder.n_batches),
            "net": {k: v.detach().cpu() for k, v in self.net_.state_dict().items()},
            "genes": list(self.genes_),
            "scaler": self.scaler_.state_dict(),
            "reference_total": self.reference_total_,
        }
        if self.batches_ is not None:  # per-batch statistics are in the scaler's state
            state["batches"] = list(self.batches_)
        return state

    def _set_state(self, state: dict, device: str) -> None:
        from ..nn import BGFormerNet

        dev = resolve_device(device)
        net = BGFormerNet(**state["arch"])
        net.load_state_dict(state["net"])
        self.net_ = net.to(dev).eval()
        self.genes_ = list(state["genes"])
        self.scaler_ = Scaler.from_state_dict(state["scaler"])
        self.reference_total_ = state["reference_total"]
        self.batches_ = state.get("batches")  # absent from files of models without batch_key (and older ones)


# ---------------------------------------------------------------------- helpers
_POSITIVE_INTS = ("n_anchors", "n_layers", "n_heads", "d_model", "n_latent", "batch_size", "max_epochs",
                  "n_top_genes", "max_fit_cells", "pretrain_steps", "target_interval", "patience")


def check_params(model: BGFormer) -> None:
    """Raise :class:`InputError` for a hyperparameter outside its valid range."""
    for name in _POSITIVE_INTS:
        check_number(name, getattr(model, name), 1, integer=True)
    check_number("cluster_steps", model.cluster_steps, 0, integer=True)
    if model.d_model % model.n_heads:
        msg = f"d_model={model.d_model!r} must be divisible by n_heads={model.n_heads!r}"
        raise InputError(msg)
    check_number("dropout", model.dropout, 0.0, 1.0, hi_open=True)
    for name in ("noise_std", "weight_decay", "gamma", "vq_weight"):
        check_number(name, getattr(model, name), 0.0)
    check_number("lr", model.lr, 0.0, lo_open=True)
    check_resolution(model.resolution)
    check_flag("early_stopping", model.early_stopping)
    check_number("validation_size", model.validation_size, 0.0, 0.5, lo_open=True, hi_open=True)
    check_choice("target", model.target, ("dec", "balanced"))
    check_choice("lr_schedule", model.lr_schedule, LR_SCHEDULES)
    check_number("proportion_momentum", model.proportion_momentum, 0.0, 1.0, hi_open=True)
    check_max_value(model.max_value)
    if model.n_clusters is not None and model.n_clusters > model.max_fit_cells:
        msg = (
            f"n_clusters={model.n_clusters} is more than max_fit_cells={model.max_fit_cells}, the cells the "
            "centres are initialised on; raise max_fit_cells or ask for fewer clusters"
        )
        raise InputError(msg)


def _to_device(batch, device):
    """Counts, size factors and batch codes (``None`` without batches) of a mini-batch, as tensors."""
    import torch

    counts = torch.from_numpy(batch.counts).to(device)
    codes = None if batch.batch_codes is None else torch.from_numpy(batch.batch_codes).to(device)
    return counts, torch.from_numpy(batch.size_factors).to(device), codes


def embed(net, source: CountSource, scaler: Scaler, device, *, indices=None, with_q: bool = False, chunk: int = 2048):
    """Stream cells through the encoder in eval mode: ``(z, log_q or None)`` as numpy arrays."""
    import torch

    was_training = net.training
    net.eval()
    zs, qs = [], []
    with torch.inference_mode():
        for batch in source.iter_batches(chunk, indices=indices):
            counts, sf, codes = _to_device(batch, device)
            z = net.encode(scaler.transform_torch(counts, sf, codes))
            zs.append(z.cpu().numpy())
            if with_q:
                qs.append(net.log_q(z).cpu().numpy())
    net.train(was_training)
    return np.concatenate(zs), (np.concatenate(qs) if with_q else None)


def init_anchors(net, source: CountSource, scaler: Scaler, indices: np.ndarray, seed: int, rng, device) -> None:
    """Set each block's anchors to k-means centres of its normalised inputs on a seeded sample.

    Blocks are initialised in order, so block ``l`` sees the output of the already-initialised block
    ``l−1``. Fewer sampled cells than anchors: the missing anchors are jittered copies of centres.
    """
    import torch

    batch = source.batch(indices)
    counts, sf, codes = _to_device(batch, device)
    x = scaler.transform_torch(counts, sf, codes)
    net.eval()
    for layer, block in enumerate(net.blocks):
        h = net.block_inputs(x)[layer].cpu().numpy()
        m = block.anchors.shape[0]
        centres = kmeans_centers(h, min(m, h.shape[0]), seed + layer, n_init=1)
        if centres.shape[0] < m:
            extra = centres[rng.integers(centres.shape[0], size=m - centres.shape[0])]
            centres = np.concatenate([centres, extra + 0.01 * rng.standard_normal(extra.shape)])
        with torch.no_grad():
            block.anchors.copy_(torch.as_tensor(centres, dtype=block.anchors.dtype))
    net.train()


def _steps_per_epoch(n_obs: int, batch_size: int) -> int:
    return math.ceil(n_obs / min(batch_size, n_obs))


def _batches(source: CountSource, batch_size: int, rng, indices: np.ndarray | None = None):
    """Endless shuffled mini-batches of the cells at ``indices`` (all cells when ``None``)."""
    n = source.n_obs if indices is None else len(indices)
    batch_size = min(batch_size, n)
    drop_last = n > batch_size
    while True:
        yield from source.iter_batches(
            batch_size, shuffle=True, rng=rng, indices=indices, drop_last=drop_last
        )


MAX_VALIDATION_CELLS = 4096
MIN_VALIDATION_CELLS = 16


def split_validation(n_obs: int, fraction: float, rng) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Seeded split into sorted ``(train, validation)`` cell positions for early stopping.

    The validation set holds ``fraction`` of the cells, at most :data:`MAX_VALIDATION_CELLS`.
    Returns ``(None, None)`` when it would hold fewer than :data:`MIN_VALIDATION_CELLS`.
    """
    n_val = min(int(round(fraction * n_obs)), MAX_VALIDATION_CELLS)
    if n_val < MIN_VALIDATION_CELLS:
        logger.info("bgformer: %d cells are too few to hold out a validation set; no early stopping", n_obs)
        return None, None
    val = np.sort(rng.choice(n_obs, n_val, replace=False))
    train = np.setdiff1d(np.arange(n_obs), val, assume_unique=True)
    return train, val


class Validation:
    """Held-out cells and their clean-input ZINB loss (the early-stopping criterion)."""

    def __init__(
        self, source: CountSource, scaler: Scaler, indices: np.ndarray, device, chunk: int = 1024
    ) -> None:
        self.counts, self.size_factors, self.batch_codes = _to_device(source.batch(indices), device)
        self.scaler = scaler
        self.chunk = chunk

    def loss(self, net) -> float:
        """Mean ZINB negative log-likelihood of the held-out counts, network in eval mode."""
        import torch

        was_training = net.training
        net.eval()
        total, n = 0.0, self.counts.shape[0]
        with torch.inference_mode():
            for start in range(0, n, self.chunk):
                sl = slice(start, start + self.chunk)
                counts, sf = self.counts[sl], self.size_factors[sl]
                codes = None if self.batch_codes is None else self.batch_codes[sl]
                z = net.encode(self.scaler.transform_torch(counts, sf, codes))
                total += float(net.reconstruction_loss(z, counts, sf, codes)) * counts.shape[0]
        net.train(was_training)
        return total / n


def train_stage(
    model: BGFormer,
    net,
    source: CountSource,
    stage: str,
    n_steps: int,
    rng,
    gen,
    device,
    *,
    target=None,
    indices: np.ndarray | None = None,
    validation: Validation | None = None,
) -> list[dict]:
    """Run up to ``n_steps`` AdamW steps of ``stage`` (``"pretrain"`` or ``"cluster"``); return the history.

    Batches are drawn from the cells at ``indices`` (all cells when ``None``). With ``validation``,
    its loss is evaluated at every history row (``val_zinb``); the stage stops after
    ``model.patience`` evaluations without a new best and the best weights are restored
    (:class:`sccluster.nn.EarlyStopping`).

    ``target`` maps a batch's ``log q`` to its clustering target (``None``: DEC). In the cluster stage
    the ``log q`` it sees comes from a frozen copy of ``net`` refreshed every ``model.target_interval``
    steps or every pass over the cells, whichever is sooner (see :class:`sccluster.nn.TargetSnapshot`).

    The history holds the mean losses over windows of ``log_every`` steps. A non-finite loss raises
    :class:`TrainingError`.
    """
    import torch

    from ..nn import EarlyStopping, TargetSnapshot

    if n_steps <= 0:
        return []
    gamma = model.gamma if stage == "cluster" else 0.0
    opt = torch.optim.AdamW(net.parameters(), lr=model.lr, weight_decay=model.weight_decay)
    batches = _batches(source, model.batch_size, rng, indices)
    stopper = None if validation is None else EarlyStopping(net, model.patience)
    log_every = max(1, min(50, n_steps // 20))
    history, window = [], []
    interval = min(model.target_interval, _steps_per_epoch(source.n_obs, model.batch_size))
    snapshot = None
    if gamma > 0:
        snapshot = TargetSnapshot(net, interval, lambda frozen, x: frozen.log_q(frozen.encode(x)))
    net.train()
    bar = progress(range(n_steps), desc=f"bgformer {stage}", leave=False)
    for step in bar:
        if model.lr_schedule == "cosine":  # no write at "constant": the optimiser keeps the rate it was built with
            set_lr(opt, phase_lr(model.lr, step, n_steps))
        counts, sf, codes = _to_device(next(batches), device)
        x = model.scaler_.transform_torch(counts, sf, codes)
        noise = torch.randn(x.shape, generator=gen).to(device) * model.noise_std
        target_log_q = None if snapshot is None else snapshot.log_q(x)
        losses = net.training_loss(
            x, noise, counts, sf,
            gamma=gamma, vq_weight=model.vq_weight, target=target, target_log_q=target_log_q, batch=codes,
        )  # fmt: skip
        loss = losses["loss"]
        if not torch.isfinite(loss):
            msg = (
                f"BGFormer training diverged ({stage} step {step + 1}: loss is {loss.item()}); "
                f"lower the learning rate (lr={model.lr}), e.g. lr={model.lr / 10:g}"
            )
            raise TrainingError(msg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append(torch.stack([losses[k].detach() for k in ("loss", "zinb", "kl", "vq")]))
        if len(window) == log_every or step == n_steps - 1:
            mean = torch.stack(window).mean(dim=0).tolist()
            row = {"stage": stage, "step": step + 1, **dict(zip(("loss", "zinb", "kl", "vq"), mean))}
            history.append(row)
            bar.set_postfix(loss=f"{mean[0]:.4f}", refresh=False)
            window = []
            if stopper is not None:
                row["val_zinb"] = validation.loss(net)
                if stopper.update(row["val_zinb"], step + 1):
                    break
    if stopper is not None:
        stopper.restore()
        logger.info(
            "bgformer %s: %d steps; kept the weights of step %d (validation ZINB %.4f)",
            stage, history[-1]["step"], stopper.best_step, stopper.best_loss,
        )  # fmt: skip
    return history
