"""The SiameseClu network and its losses (tensors only; never imports anndata).

Two shared-weight encoders see two augmented views each: an MLP on the scaled expression of the
highly variable genes (expression views) and an MLP on graph-propagated PCA features (graph views;
the sparse propagation happens outside, once per view refresh, see :mod:`sccluster.graph`). Their
embeddings are fused by a gating network, refined globally through attention to ``M`` anchor tokens
(``z = z_l + α·attn(z_l)``, α learned from 0), decoded to ZINB parameters of the raw counts, and
softly assigned to learned centres with a Student-t kernel.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._attention import AnchorAttention
from ._clustering import dec_target, kl_clustering_loss, log_student_t
from ._loss import LossOutput
from ._zinb import ZINBDecoder, zinb_nll


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers += [nn.LayerNorm(sizes[i + 1]), nn.GELU()]
    return nn.Sequential(*layers)


class SiameseNet(nn.Module):
    """Siamese encoders, gated fusion, anchor attention, ZINB decoder and cluster centres.

    Parameters
    ----------
    n_genes
        Input genes ``G`` (expression views and ZINB output).
    n_graph
        Width of the propagated graph features (number of PCs).
    n_latent
        Embedding width ``d``.
    n_hidden
        Width of the first hidden layer (the second is half of it).
    n_anchors
        Anchor tokens of the global-structure step.
    n_clusters
        Number of centres (may be set later with :meth:`set_centers`).
    use_fusion
        Gated fusion plus anchor attention; when False a plain average of the two encoders.
    n_batches
        Batches the ZINB decoder is conditioned on (one-hot, :class:`ZINBDecoder`); ``0`` (default)
        builds the unconditioned decoder. The encoders never take the batch.
    correlation_weight
        Weight of the cross-view correlation terms (``>= 0``; default 1.0).
    cluster_weight
        Weight of the KL clustering term (``>= 0``; default 1.0).
    use_correlation
        Whether the correlation terms are part of the loss (default True; an ablation switch).
    edge_weight
        Weight of the sampled-edge term of the graph reconstruction, beside the MSE of the PCA scores
        (``>= 0``; default 0.5).
    sample_correlation_weight
        Weight of the cell-level (``B x B``) correlation terms beside the feature-level ones
        (``>= 0``; default 0.1).

    Attributes
    ----------
    cluster_target
        ``log q -> P`` of the clustering phase (for example :class:`sccluster.ot.BalancedTarget`), or
        ``None`` (default) for the DEC target.
    """

    def __init__(
        self,
        n_genes: int,
        n_graph: int,
        n_latent: int = 32,
        n_hidden: int = 256,
        n_anchors: int = 32,
        n_clusters: int = 1,
        *,
        use_fusion: bool = True,
        n_batches: int = 0,
        correlation_weight: float = 1.0,
        cluster_weight: float = 1.0,
        use_correlation: bool = True,
        edge_weight: float = 0.5,
        sample_correlation_weight: float = 0.1,
    ) -> None:
        super().__init__()
        self.correlation_weight, self.cluster_weight = correlation_weight, cluster_weight
        self.use_correlation = use_correlation
        self.edge_weight, self.sample_correlation_weight = edge_weight, sample_correlation_weight
        self.cluster_target = None
        h2 = max(n_hidden // 2, n_latent)
        self.use_fusion = use_fusion
        self.ae_encoder = _mlp([n_genes, n_hidden, h2, n_latent])
        self.graph_encoder = _mlp([n_graph, n_hidden, h2, n_latent])
        self.graph_decoder = _mlp([n_latent, h2, n_graph])
        self.gate = nn.Sequential(nn.Linear(2 * n_latent, n_latent), nn.GELU(), nn.Linear(n_latent, n_latent))
        heads = 4 if n_latent % 4 == 0 else 1
        self.attention = AnchorAttention(n_latent, n_anchors, n_heads=heads)
        self.alpha = nn.Parameter(torch.zeros(()))
        self.decoder = ZINBDecoder(n_latent, n_genes, n_batches=n_batches)
        self.centers = nn.Parameter(torch.zeros(n_clusters, n_latent))

    def set_centers(self, centers: torch.Tensor) -> None:
        """Replace the cluster centres ``(K, d)`` (a fresh parameter)."""
        self.centers = nn.Parameter(centers.detach().clone().to(self.alpha.device, torch.float32))

    def fuse(self, z_ae: torch.Tensor, z_g: torch.Tensor) -> torch.Tensor:
        """Fused embedding of the two encoders plus the anchor-attention global step."""
        if not self.use_fusion:
            return 0.5 * (z_ae + z_g)
        g = torch.sigmoid(self.gate(torch.cat([z_ae, z_g], dim=1)))
        z_l = g * z_ae + (1.0 - g) * z_g
        return z_l + self.alpha * self.attention(z_l)

    def embed(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Embedding of un-augmented inputs (scaled expression ``x``, propagated features ``h``)."""
        return self.fuse(self.ae_encoder(x), self.graph_encoder(h))

    def log_q(self, z: torch.Tensor) -> torch.Tensor:
        """Log Student-t soft assignments to the centres, ``(B, K)``."""
        return log_student_t(z, self.centers)

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Embeddings of one mini-batch of ``B`` cells.

        ``batch`` holds ``x1`` and ``x2`` (two expression views ``(B, G)``), ``h`` (graph features
        ``(4B, p)``: view 1 and view 2 of the cells, then view 1 and view 2 of one sampled neighbour of
        each), ``x0`` (PCA scores ``(B, p)``), ``counts``, ``size_factors``, ``batch_codes`` and, in the
        clustering phase, ``target_log_q`` (the batch's soft assignments under a snapshot of the
        network, :meth:`target_log_q`), whose presence switches the clustering term on.
        """
        x1, x2 = batch["x1"], batch["x2"]
        bsz = x1.shape[0]
        za1, za2 = self.ae_encoder(torch.cat([x1, x2])).split(bsz)
        zg1, zg2, zp1, zp2 = self.graph_encoder(batch["h"]).split(bsz)
        z_ae, z_g = 0.5 * (za1 + za2), 0.5 * (zg1 + zg2)
        z = self.fuse(z_ae, z_g)
        out = {"za1": za1, "za2": za2, "zg1": zg1, "zg2": zg2, "zp1": zp1, "zp2": zp2, "z_g": z_g, "z": z}
        if batch.get("target_log_q") is not None:
            out["log_q"] = self.log_q(z)
        return out

    def loss(self, batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> LossOutput:
        """ZINB + graph reconstruction + correlation terms (+ KL(P‖Q) in the clustering phase).

        P is computed from ``batch["target_log_q"]``: ``cluster_target(·)`` when set, else the DEC
        target. Terms, each as weighted in the total: ``zinb``, ``graph``, ``corr`` (with
        ``use_correlation``) and ``cluster`` (clustering phase).
        """
        o = outputs
        zg1, zg2, za1, za2 = o["zg1"], o["zg2"], o["za1"], o["za2"]
        parts: dict[str, torch.Tensor] = {}
        zinb_params = self.decoder(o["z"], batch["size_factors"], batch.get("batch_codes"))
        parts["zinb"] = zinb_nll(batch["counts"], *zinb_params)
        parts["graph"] = F.mse_loss(self.graph_decoder(o["z_g"]), batch["x0"]) + self.edge_weight * (
            edge_loss(zg1, o["zp1"], zg1.roll(1, 0)) + edge_loss(zg2, o["zp2"], zg2.roll(1, 0))
        )
        if self.use_correlation:
            parts["corr"] = self.correlation_weight * (
                self.sample_correlation_weight
                * (sample_correlation_loss(za1, za2) + sample_correlation_loss(zg1, zg2))
                + feature_correlation_loss(za1, za2)
                + feature_correlation_loss(zg1, zg2)
            )
        if "log_q" in o:
            source = batch["target_log_q"]
            target = dec_target(source.exp()) if self.cluster_target is None else self.cluster_target(source)
            parts["cluster"] = self.cluster_weight * kl_clustering_loss(target.float(), o["log_q"])
        total = sum(parts.values())
        assert isinstance(total, torch.Tensor)  # parts always holds zinb and graph
        return LossOutput(total, {k: v.detach() for k, v in parts.items()})

    def target_log_q(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Soft assignments ``log q`` of the clean inputs: ``batch["x"]`` and the full-graph ``h_clean``."""
        return self.log_q(self.embed(batch["x"], batch["h_clean"]))


def sample_correlation_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Cross-view cell-cell cosine matrix of a mini-batch ``(B, B)`` pushed toward identity.

    ``mean_i (S_ii − 1)² + mean_{i≠j} S_ij²`` with ``S = norm(z1)·norm(z2)ᵀ``; at most ``B x B``.
    """
    s = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T
    b = s.shape[0]
    diag = torch.diagonal(s)
    on = (diag - 1.0).pow(2).mean()
    off = (s.pow(2).sum() - diag.pow(2).sum()) / max(b * (b - 1), 1)
    return on + off


def feature_correlation_loss(
    z1: torch.Tensor, z2: torch.Tensor, off_weight: float | None = None
) -> torch.Tensor:
    """Barlow-Twins cross-correlation of the ``d`` embedding features over a batch ``(d, d)``.

    Features are standardised over the batch; the diagonal is pulled to 1 and the off-diagonal to
    0 (weighted by ``off_weight``, default ``1/d``); the sum is divided by ``d``.
    """
    b, d = z1.shape
    a = (z1 - z1.mean(0)) / (z1.std(0) + 1e-5)
    c = (z2 - z2.mean(0)) / (z2.std(0) + 1e-5)
    corr = a.T @ c / max(b - 1, 1)
    diag = torch.diagonal(corr)
    w = 1.0 / d if off_weight is None else off_weight
    off = corr.pow(2).sum() - diag.pow(2).sum()
    return ((diag - 1.0).pow(2).sum() + w * off) / d


def edge_loss(
    z: torch.Tensor, z_pos: torch.Tensor, z_neg: torch.Tensor, temperature: float = 0.5
) -> torch.Tensor:
    """Graph reconstruction on sampled edges: BCE of cosine/τ for neighbours vs random cells."""
    zn = F.normalize(z, dim=1)
    pos = (zn * F.normalize(z_pos, dim=1)).sum(1) / temperature
    neg = (zn * F.normalize(z_neg, dim=1)).sum(1) / temperature
    return F.softplus(-pos).mean() + F.softplus(neg).mean()
