"""The BGFormer network: input projection, stacked anchor blocks, latent head, ZINB decoder, DEC centres.

Tensors only (no AnnData). ``forward(batch)`` and ``loss(batch, outputs)`` are what
:mod:`sccluster.train` runs; the model class in ``sccluster.models`` builds the batches and drives inference.
"""

from __future__ import annotations

import torch
from torch import nn

from ._attention import AnchorBlock
from ._clustering import dec_target, kl_clustering_loss, log_student_t
from ._loss import LossOutput
from ._zinb import ZINBDecoder, zinb_nll


def vector_quantize(x: torch.Tensor, codebook: torch.Tensor, commitment: float = 0.25):
    """Nearest-codeword quantisation with a straight-through estimator.

    Returns ``(x_st, loss, index)``: ``x_st`` equals the nearest codeword in the forward pass and
    passes gradients to ``x`` unchanged (straight-through); ``loss`` is the VQ-VAE codebook term
    ``‖sg(x) − c‖²`` plus ``commitment · ‖x − sg(c)‖²``, averaged over cells.
    """
    with torch.no_grad():
        index = torch.cdist(x, codebook).argmin(dim=1)
    quant = codebook[index]
    loss = (x.detach() - quant).pow(2).sum(dim=1).mean() + commitment * (x - quant.detach()).pow(2).sum(
        dim=1
    ).mean()
    x_st = x + (quant - x).detach()
    return x_st, loss, index


class BGFormerNet(nn.Module):
    """Encoder ``x → z`` through anchor attention, a ZINB decoder ``z → counts`` and DEC centres.

    Parameters
    ----------
    n_genes
        Number of input genes ``G``.
    d_model
        Width of the anchor blocks.
    n_latent
        Width of the embedding ``z``.
    n_anchors, n_heads, n_layers
        Anchors per block, attention heads, and number of stacked blocks (block ``l`` takes block
        ``l−1``'s output).
    dropout
        Dropout inside the blocks and the decoder.
    n_clusters
        Number of DEC centres (may be set later with :meth:`set_centers`).
    n_batches
        Number of batches the ZINB decoder is conditioned on (see :class:`ZINBDecoder`); ``0`` (default)
        for none. The encoder never takes the batch, so cells of any batch, seen or not, embed alike.
    gamma
        Weight of the KL clustering term (``>= 0``; default 1.0).
    vq_weight
        Weight of the vector-quantisation terms (``>= 0``; default 0: off, see :meth:`encode`).

    Attributes
    ----------
    cluster_target
        ``log q -> P`` of the clustering stage (for example :class:`sccluster.ot.BalancedTarget`), or
        ``None`` (default) for the DEC target.
    """

    def __init__(
        self,
        n_genes: int,
        *,
        d_model: int = 128,
        n_latent: int = 32,
        n_anchors: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        dropout: float = 0.1,
        n_clusters: int = 0,
        n_batches: int = 0,
        gamma: float = 1.0,
        vq_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.gamma = gamma
        self.vq_weight = vq_weight
        self.cluster_target = None
        self.input_proj = nn.Linear(n_genes, d_model)
        self.blocks = nn.ModuleList(
            [AnchorBlock(d_model, n_anchors, n_heads=n_heads, dropout=dropout) for _ in range(n_layers)]
        )
        self.head = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, d_model),
            nn.GELU(),
            nn.Linear(d_model, n_latent),
            nn.LayerNorm(n_latent, elementwise_affine=False),
        )
        self.decoder = ZINBDecoder(n_latent, n_genes, n_hidden=d_model, dropout=dropout, n_batches=n_batches)
        self.centers = nn.Parameter(torch.zeros(n_clusters, n_latent))

    # ------------------------------------------------------------------ encoder
    def encode(self, x: torch.Tensor, *, vq: bool = False):
        """Embedding ``z`` ``(B, n_latent)`` of scaled expression ``x`` ``(B, G)``.

        With ``vq=True`` also returns the embedding of the straight-through quantised input of the
        last block and the VQ loss summed over blocks.
        """
        h = self.input_proj(x)
        vq_loss = x.new_zeros(())
        z_q = None
        for i, block in enumerate(self.blocks):
            assert isinstance(block, AnchorBlock)  # the ModuleList holds only AnchorBlocks
            if vq:
                h_norm = block.attention_input(h)
                h_st, loss, _ = vector_quantize(h_norm, block.anchors)
                vq_loss = vq_loss + loss
                if i == len(self.blocks) - 1:
                    z_q = self.head(h_st)
            h = block(h)
        z = self.head(h)
        if vq:
            return z, z_q, vq_loss
        return z

    @torch.no_grad()
    def block_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised input of every block's attention (what its anchors are compared with)."""
        h = self.input_proj(x)
        out = []
        for block in self.blocks:
            assert isinstance(block, AnchorBlock)  # the ModuleList holds only AnchorBlocks
            out.append(block.attention_input(h))
            h = block(h)
        return out

    # ------------------------------------------------------------------ losses
    def reconstruction_loss(
        self,
        z: torch.Tensor,
        counts: torch.Tensor,
        size_factors: torch.Tensor,
        batch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ZINB negative log-likelihood of the raw ``counts`` decoded from ``z`` (and ``batch``, when conditioned)."""
        log_mean, disp, pi_logits = self.decoder(z, size_factors, batch)
        return zinb_nll(counts, log_mean, disp, pi_logits)

    def log_q(self, z: torch.Tensor) -> torch.Tensor:
        """Log Student-t soft assignments ``(B, K)`` of ``z`` to the centres."""
        return log_student_t(z, self.centers)

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Embeddings of one mini-batch.

        ``batch`` holds ``x`` (scaled expression ``(B, G)``), ``x_noisy`` (its corrupted copy, the input
        of the reconstruction pass), ``counts`` and ``size_factors`` (raw counts and their size
        factors), ``batch_codes`` (``(B,)`` or ``None``) and, in the clustering stage,
        ``target_log_q``: the batch's soft assignments under a snapshot of the network
        (:meth:`target_log_q`), whose presence switches the clustering term on. Then the clean pass
        ``x`` is concatenated with the noisy one into one batched forward. Returns ``z`` (noisy pass),
        ``z_q`` and ``vq_loss`` (with ``vq_weight > 0``) and ``log_q`` (clean pass, clustering only).
        """
        x, noisy = batch["x"], batch["x_noisy"]
        b = x.shape[0]
        cluster = batch.get("target_log_q") is not None
        inp = torch.cat([noisy, x]) if cluster else noisy
        if self.vq_weight > 0:
            z, z_q, vq_loss = self.encode(inp, vq=True)
        else:
            z, z_q, vq_loss = self.encode(inp), None, x.new_zeros(())
        out = {"z": z[:b], "z_q": None if z_q is None else z_q[:b], "vq_loss": vq_loss}
        if cluster:
            out["log_q"] = self.log_q(z[b:])
        return out

    def loss(self, batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> LossOutput:
        """ZINB reconstruction, ``+ vq_weight`` · VQ terms, ``+ gamma`` · KL(P‖Q) in the clustering stage.

        P is computed from ``batch["target_log_q"]``: ``cluster_target(·)`` when set (for example
        :class:`sccluster.ot.BalancedTarget`), else the DEC target. Terms (unweighted): ``zinb``, ``kl``
        and ``vq``.
        """
        counts, sf, codes = batch["counts"], batch["size_factors"], batch.get("batch_codes")
        zinb = self.reconstruction_loss(outputs["z"], counts, sf, codes)
        vq_loss = outputs["vq_loss"]
        loss = zinb
        if self.vq_weight > 0:
            reconstruction_q = self.reconstruction_loss(outputs["z_q"], counts, sf, codes)
            loss = loss + self.vq_weight * (reconstruction_q + vq_loss)
        kl = zinb.new_zeros(())
        if "log_q" in outputs:
            log_q = outputs["log_q"]
            source = batch["target_log_q"].detach()
            target = self.cluster_target
            p = dec_target(source.exp()) if target is None else target(source).to(log_q.dtype)
            kl = kl_clustering_loss(p, log_q)
            loss = loss + self.gamma * kl
        return LossOutput(loss, {"zinb": zinb.detach(), "kl": kl.detach(), "vq": vq_loss.detach()})

    def target_log_q(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Soft assignments ``log q`` of the clean input ``batch["x"]`` (what the clustering target uses)."""
        return self.log_q(self.encode(batch["x"]))

    @torch.no_grad()
    def set_centers(self, centers: torch.Tensor) -> None:
        """Replace the DEC centres (their number may change)."""
        self.centers = nn.Parameter(centers.to(self.centers.device, self.centers.dtype).clone())
