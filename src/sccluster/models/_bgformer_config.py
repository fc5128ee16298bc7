"""BGFormer's hyperparameters, by concern (see :mod:`sccluster.models._config`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from sccluster._errors import InputError
from sccluster.ot import DEFAULT_MOMENTUM
from sccluster.train import Schedule

from ._config import Interval, ModelConfig, NonNegative, PositiveInt
from ._init_clusters import RESOLUTION


@dataclass(frozen=True)
class Architecture:
    """The network.

    Parameters
    ----------
    n_anchors
        Anchors per attention block (integer ``>= 1``; default 64).
    n_layers
        Stacked anchor blocks (integer ``>= 1``; default 2).
    n_heads
        Attention heads; must divide ``d_model`` (integer ``>= 1``; default 4).
    d_model
        Width of the blocks and of the decoder's hidden layer (integer ``>= 1``; default 128).
    n_latent
        Dimension of the embedding ``z`` (``embedding_``, ``transform``) (integer ``>= 1``; default 32).
    dropout
        Dropout in the blocks and the decoder (``0 <= dropout < 1``; default 0.1).
    vq_weight
        Weight of the optional vector-quantisation term (anchors as a codebook: codebook + commitment
        loss, and ZINB reconstruction from the straight-through quantised input of the last block)
        (``>= 0``; default 0, off: the anchors are still learned through attention).
    """

    n_anchors: PositiveInt = 64
    n_layers: PositiveInt = 2
    n_heads: PositiveInt = 4
    d_model: PositiveInt = 128
    n_latent: PositiveInt = 32
    dropout: Annotated[float, Interval(0.0, 1.0, hi_open=True)] = 0.1
    vq_weight: NonNegative = 0.0

    def check(self) -> None:
        if self.d_model % self.n_heads:
            msg = f"d_model={self.d_model!r} must be divisible by n_heads={self.n_heads!r}"
            raise InputError(msg)


@dataclass(frozen=True)
class Augmentation:
    """Corruption of the input.

    Parameters
    ----------
    noise_std
        Standard deviation of the Gaussian noise added to the scaled input of the reconstruction pass
        (``>= 0``; default 1.0, the published level, chosen by held-out reconstruction likelihood;
        ``docs/decisions/0019-bgformer-noise-std-heldout-zinb.md``).
    """

    noise_std: NonNegative = 1.0


@dataclass(frozen=True)
class Optimisation:
    """Optimiser, budgets and early stopping.

    Parameters
    ----------
    lr
        AdamW learning rate of both stages (``> 0``; default 1e-3).
    weight_decay
        AdamW weight decay (``>= 0``; default 1e-4).
    lr_schedule
        ``"constant"`` (default): ``lr`` throughout; ``"cosine"``: within each stage (pretraining,
        clustering) the rate falls along a half cosine from ``lr`` to about zero.
    batch_size
        Cells per mini-batch (integer ``>= 1``; default 256).
    pretrain_steps
        Optimiser steps of the pretraining stage, at most ``max_epochs`` passes over the cells
        (integer ``>= 1``; default 1000).
    cluster_steps
        Optimiser steps of the clustering stage, at most ``max_epochs`` passes over the cells
        (integer ``>= 0``; default 500; 0 keeps the initial centres).
    max_epochs
        Cap on passes over the cells per stage (integer ``>= 1``; default 200).
    early_stopping
        Hold out ``validation_size`` of the cells (at most 4,096) from pretraining, evaluate their ZINB
        loss on the clean input at every history row (every ``min(50, pretrain_steps // 20)`` steps),
        stop after ``patience`` evaluations without a new best and keep the best weights; the held-out
        cells join the clustering stage. Skipped below 16 held-out cells. No labels are used
        (default False; ``docs/decisions/0001-bgformer-early-stopping-off.md``).
    validation_size
        Fraction of the cells held out for early stopping (``0 < validation_size < 0.5``; default 0.1).
    patience
        Evaluations without a lower validation loss before pretraining stops (integer ``>= 1``; default 5).
    """

    lr: Annotated[float, Interval(0.0, lo_open=True)] = 1e-3
    weight_decay: NonNegative = 1e-4
    lr_schedule: Schedule = "constant"
    batch_size: PositiveInt = 256
    pretrain_steps: PositiveInt = 1000
    cluster_steps: Annotated[int, Interval(0, integer=True)] = 500
    max_epochs: PositiveInt = 200
    early_stopping: bool = False
    validation_size: Annotated[float, Interval(0.0, 0.5, lo_open=True, hi_open=True)] = 0.1
    patience: PositiveInt = 5


@dataclass(frozen=True)
class ClusteringHead:
    """The Student-t head, its target and its initial centres.

    Parameters
    ----------
    gamma
        Weight of the KL clustering loss in the clustering stage (``>= 0``; default 1.0).
    target_interval
        Most clustering steps between refreshes of the network snapshot that computes the target P
        (DEC's update interval); the snapshot is also refreshed at least once per pass over the cells.
        ``1`` recomputes P from the network being trained at every step (integer ``>= 1``; default 100).
    target
        ``"dec"`` (default): the published DEC target, which may empty centres; ``"balanced"``: Sinkhorn
        with running cluster proportions (:class:`sccluster.ot.BalancedTarget` with its defaults), which
        resists emptying centres, so ``n_clusters_`` nearly always equals ``n_clusters``.
    proportion_momentum
        Per-step EMA momentum of the cluster proportions of the balanced target (``0 <= m < 1``;
        default 0.99).
    resolution
        Leiden resolution used to estimate k when ``n_clusters=None`` (a number ``> 0``), or ``"auto"``
        (default): the finest resolution of a grid whose partitions are as reproducible across cell
        subsamples as the most reproducible one (:func:`sccluster.models.choose_resolution`; no labels;
        ``docs/decisions/0004-bgformer-resolution-auto.md``). Kept in ``resolution_``, the stability of
        each resolution in ``resolution_table_``.
    """

    gamma: NonNegative = 1.0
    target_interval: PositiveInt = 100
    target: Literal["dec", "balanced"] = "dec"
    proportion_momentum: Annotated[float, Interval(0.0, 1.0, hi_open=True)] = DEFAULT_MOMENTUM
    resolution: RESOLUTION = "auto"


@dataclass(frozen=True)
class Input:
    """Genes, scaling, subsampling and batches of the input.

    Parameters
    ----------
    n_top_genes
        Genes used: ``var["highly_variable"]`` when present, else this many highly variable genes
        (integer ``>= 1``; default 2000).
    max_value
        Clip bound of the z-scored input (``> 0``, or ``None`` for no clipping; default 10).
    max_fit_cells
        Size of the seeded subsample the scaler, the anchors and the initial centres are fitted on;
        training batches and inference use every cell. With ``batch_key`` the scaler's subsample gives
        each batch at least ``min(its cells, 1000)`` cells (integer ``>= 1``; default 50,000).
    batch_key
        Column of ``obs`` naming each cell's batch (donor, sample, lane, condition), or ``None`` (default:
        no batch covariate; training and results are those of a model without it). Every cell needs a
        value and every batch at least 2 cells; one batch is allowed (with a warning) but has no effect.
        Given, each batch is z-scored with its own gene statistics and the ZINB decoder is conditioned on
        the batch (module docstring). :meth:`predict` and :meth:`transform` read the same column: cells of
        batches not seen in training get a warning and are scaled with their batch's own statistics (at
        least 50 cells) or the pooled training statistics. The training batches are in ``batches_``.
    """

    n_top_genes: PositiveInt = 2000
    max_value: Annotated[float | None, Interval(0.0, lo_open=True)] = 10.0
    max_fit_cells: PositiveInt = 50_000
    batch_key: str | None = None


@dataclass(frozen=True)
class BGFormerConfig(ModelConfig):
    """Every hyperparameter of :class:`sccluster.models.BGFormer`, by concern."""

    architecture: Architecture
    augmentation: Augmentation
    optimisation: Optimisation
    clustering: ClusteringHead
    input: Input
