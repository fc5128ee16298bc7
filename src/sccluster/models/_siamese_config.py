"""SiameseClu's hyperparameters, by concern (see :mod:`sccluster.models._config`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from sccluster.ot import DEFAULT_ESTIMATE, DEFAULT_MOMENTUM, DEFAULT_N_ITERS, DEFAULT_POWER, Estimate
from sccluster.train import Schedule

from ._config import Interval, ModelConfig, NonNegative, PositiveInt
from ._init_clusters import RESOLUTION, Init


@dataclass(frozen=True)
class Graph:
    """The cell graph and its diffusion.

    Parameters
    ----------
    n_neighbors
        Neighbours per cell in the kNN graph on the PCA scores (integer ``>= 1``; default 15).
    graph_weights
        Edge weights: ``"adaptive"`` (default; Gaussian kernel with per-cell bandwidths) or ``"binary"``.
    n_pcs
        PCA components of the graph features (integer ``>= 1``; default 50).
    ppr_alpha
        Teleport probability of the PPR diffusion (``0 < ppr_alpha <= 1``; default 0.15).
    ppr_steps
        Power-iteration steps of the PPR diffusion (integer ``>= 0``; default 10; 0: the PCA scores).
    """

    n_neighbors: PositiveInt = 15
    graph_weights: Literal["adaptive", "binary"] = "adaptive"
    n_pcs: PositiveInt = 50
    ppr_alpha: Annotated[float, Interval(0.0, 1.0, lo_open=True)] = 0.15
    ppr_steps: Annotated[int, Interval(0, integer=True)] = 10


@dataclass(frozen=True)
class Augmentation:
    """The two views of each cell.

    Parameters
    ----------
    edge_drop
        Fraction of the edges dropped (lowest similarity first) in each graph view
        (``0 <= edge_drop <= 0.5``; default 0.2).
    feature_noise
        Standard deviation σ of the multiplicative N(1, σ²) noise on the expression views (``>= 0``;
        default 0.1).
    gene_mask
        Fraction of the genes masked in each expression view (``0 <= gene_mask <= 0.9``; default 0.1).
    noise_std
        Standard deviation of the additive Gaussian noise on the scaled expression of each view, the
        denoising autoencoder's corruption (``>= 0``; default 2.5; 0 adds none;
        ``docs/decisions/0005-siamese-noise-std-2.5.md``).
    """

    edge_drop: Annotated[float, Interval(0.0, 0.5)] = 0.2
    feature_noise: NonNegative = 0.1
    gene_mask: Annotated[float, Interval(0.0, 0.9)] = 0.1
    noise_std: NonNegative = 2.5


@dataclass(frozen=True)
class Architecture:
    """The network and the weights of its losses.

    Parameters
    ----------
    n_latent
        Embedding width (integer ``>= 1``; default 32).
    n_hidden
        Width of the encoders' first hidden layer; the second has half (integer ``>= 1``; default 256).
    n_anchors
        Anchor tokens of the global attention step (integer ``>= 1``; default 32).
    correlation_weight
        Weight of the cross-view correlation losses (``>= 0``; default 1.0).
    """

    n_latent: PositiveInt = 32
    n_hidden: PositiveInt = 256
    n_anchors: PositiveInt = 32
    correlation_weight: NonNegative = 1.0


@dataclass(frozen=True)
class Optimisation:
    """Optimiser and budgets.

    Parameters
    ----------
    lr
        Adam learning rate (``> 0``; default 1e-3).
    lr_schedule
        ``"cosine"`` (default): within each phase (pretraining, clustering) the rate falls from ``lr`` to
        about zero along a half cosine; ``"constant"``: ``lr`` at every step
        (``docs/decisions/0011-siamese-lr-schedule-cosine.md``).
    batch_size
        Cells per mini-batch (integer ``>= 2``: the correlation losses compare cells; default 512).
    pretrain_steps
        Optimiser steps before the centres are initialised (integer ``>= 1``; default 300;
        ``docs/decisions/0009-siamese-pretrain-steps-1000-rejected.md``).
    cluster_steps
        Optimiser steps of the clustering phase (integer ``>= 0``; default 200; 0 keeps the initial centres).
    """

    lr: Annotated[float, Interval(0.0, lo_open=True)] = 1e-3
    lr_schedule: Schedule = "cosine"
    batch_size: Annotated[int, Interval(2, integer=True)] = 512
    pretrain_steps: PositiveInt = 300
    cluster_steps: Annotated[int, Interval(0, integer=True)] = 200


@dataclass(frozen=True)
class ClusteringHead:
    """The Student-t head, its optimal-transport target and its initial centres.

    Parameters
    ----------
    sinkhorn_iters
        Sinkhorn iterations per mini-batch (integer ``>= 1``; default 50).
    sinkhorn_power
        Sharpening power of Q in the target (``> 0``; default 2).
    proportion_momentum
        Per-step EMA momentum of the cluster-proportion estimate (``0 <= m <= 1``; default 0.99).
    marginal_relaxation
        ``None`` (default): balanced Sinkhorn, the target's cluster masses equal the estimated
        proportions. A positive ``ρ``: unbalanced Sinkhorn that only pulls them towards the proportions
        with weight ``ρ`` (``docs/decisions/0006-siamese-relaxed-target-rejected.md``).
    proportion_estimate
        What the running proportions track: ``"sharpened"`` (default), the mean of ``q^sinkhorn_power``
        normalised per cell; ``"soft"``, the mean soft assignment ``q``, which evens cluster sizes out
        (:class:`sccluster.ot.BalancedTarget`;
        ``docs/decisions/0008-siamese-proportion-estimate-sharpened.md``).
    cluster_weight
        Weight of the clustering KL loss (``>= 0``; default 1.0).
    target_interval
        Most clustering steps between refreshes of the network snapshot that computes the target P from
        the clean inputs (DEC's update interval); it is also refreshed with the graph views, once per
        epoch. ``1`` recomputes P from the network being trained at every step (integer ``>= 1``;
        default 100).
    init
        Starting centres when ``n_clusters`` is given: ``"kmeans"`` (default), k-means on the pretrained
        embedding; ``"leiden"``, the means of a Leiden partition with ``n_clusters`` communities (k-means
        when no resolution gives that many; ``docs/decisions/0010-siamese-init-leiden-rejected.md``).
        With ``n_clusters=None`` the start is always Leiden.
    resolution
        Leiden resolution when ``n_clusters=None`` (a number ``> 0``), or ``"auto"`` (default): chosen by
        subsample stability (:func:`sccluster.models.choose_resolution`; no labels;
        ``docs/decisions/0007-siamese-resolution-auto.md``), kept in ``resolution_`` and
        ``resolution_table_``.
    """

    sinkhorn_iters: PositiveInt = DEFAULT_N_ITERS
    sinkhorn_power: Annotated[float, Interval(0.0, lo_open=True)] = DEFAULT_POWER
    proportion_momentum: Annotated[float, Interval(0.0, 1.0)] = DEFAULT_MOMENTUM
    marginal_relaxation: Annotated[float | None, Interval(0.0, lo_open=True)] = None
    proportion_estimate: Estimate = DEFAULT_ESTIMATE
    cluster_weight: NonNegative = 1.0
    target_interval: PositiveInt = 100
    init: Init = "kmeans"
    resolution: RESOLUTION = "auto"


@dataclass(frozen=True)
class Ablation:
    """Switches that replace a component by its plain alternative (``benchmarks/ablation.py``).

    Parameters
    ----------
    use_augmentation
        ``False``: one clean view of the expression and of the graph (default True).
    use_correlation
        ``False``: no sample- and feature-level correlation losses (default True).
    use_fusion
        ``False``: plain mean of the two encoders, no gate and no anchor attention (default True).
    use_sinkhorn
        ``False``: the DEC target instead of the Sinkhorn target (default True).
    """

    use_augmentation: bool = True
    use_correlation: bool = True
    use_fusion: bool = True
    use_sinkhorn: bool = True


@dataclass(frozen=True)
class Input:
    """Genes, scaling and batches of the input.

    Parameters
    ----------
    n_top_genes
        Highly variable genes used (integer ``>= 1``; default 2000).
    max_value
        Clip bound after z-scoring (``> 0``, or ``None`` for no clipping; default 10).
    batch_key
        Column of ``obs`` naming each cell's batch (donor, sample, lane, condition), or ``None`` (default:
        no batch covariate; training and results are those of a model without it). Every cell needs a
        value and every batch at least 2 cells; one batch is allowed (with a warning) but has no effect.
        Given: per-batch scaling of the expression (and so of the PCA), a batch-balanced kNN graph
        (``n_neighbors // n_batches`` neighbours from every batch, at least 1) and a ZINB decoder
        conditioned on the batch (module docstring). :meth:`predict` and :meth:`transform` read the same
        column: new cells join the graph by the same balanced rule; cells of batches not seen in training
        get a warning and are scaled with their batch's own statistics (at least 50 cells) or the pooled
        training statistics. The training batches are in ``batches_``.
    """

    n_top_genes: PositiveInt = 2000
    max_value: Annotated[float | None, Interval(0.0, lo_open=True)] = 10.0
    batch_key: str | None = None


@dataclass(frozen=True)
class SiameseConfig(ModelConfig):
    """Every hyperparameter of :class:`sccluster.models.SiameseClu`, by concern."""

    graph: Graph
    augmentation: Augmentation
    architecture: Architecture
    optimisation: Optimisation
    clustering: ClusteringHead
    ablation: Ablation
    input: Input
