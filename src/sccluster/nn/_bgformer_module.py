"""The BGFormer network: input projection, stacked anchor blocks, latent head, ZINB decoder, DEC centres.

Tensors only (no AnnData). The model class in ``sccluster.models`` drives training and inference.
"""

from __future__ import annotations

import torch
from torch import nn

from ._attention import AnchorBlock
from ._clustering import dec_target, kl_clustering_loss, log_student_t
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
    loss = (x.detach() - quant).pow(2).sum(dim=1).mean() + commitment * (x - quant.detach()).pow(2).sum(dim=1).mean()
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
    ) -> None:
        super().__init__()
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
            out.append(block.attention_input(h))
            h = block(h)
        return out

    # ------------------------------------------------------------------ losses
    def reconstruction_loss(
        self, z: torch.Tensor, counts: torch.Tensor, size_factors: torch.Tensor, batch: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ZINB negative log-likelihood of the raw ``counts`` decoded from ``z`` (and ``batch``, when conditioned)."""
        log_mean, disp, pi_logits = self.decoder(z, size_factors, batch)
        return zinb_nll(counts, log_mean, disp, pi_logits)

    def log_q(self, z: torch.Tensor) -> torch.Tensor:
        """Log Student-t soft assignments ``(B, K)`` of ``z`` to the centres."""
        return log_student_t(z, self.centers)

    def training_loss(
        self,
        x: torch.Tensor,
        noise: torch.Tensor,
        counts: torch.Tensor,
        size_factors: torch.Tensor,
        *,
        gamma: float = 0.0,
        vq_weight: float = 0.0,
        target=None,
        target_log_q: torch.Tensor | None = None,
        batch: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Losses of one mini-batch; ``gamma > 0`` adds the clustering term (stage 2).

        The reconstruction pass sees ``x + noise``; with ``gamma > 0`` the clean pass ``x`` is
        concatenated with it into one batched forward and its Student-t Q is pulled towards the target
        P of this batch. P is computed from ``target_log_q`` (the batch's soft assignments under a
        periodically refreshed snapshot of the network, as in DEC) when given, else from this pass's
        detached ``log q``: ``target(·)`` when given (for example
        :class:`sccluster.ot.BalancedTarget`), else the DEC target. ``batch`` (``(B,)`` codes) conditions
        the decoder when the network has batches. Returns a dict with ``loss``, ``zinb``, ``kl`` and ``vq``.
        """
        b = x.shape[0]
        noisy = x + noise
        inp = torch.cat([noisy, x]) if gamma > 0 else noisy
        vq = vq_weight > 0
        if vq:
            z, z_q, vq_loss = self.encode(inp, vq=True)
        else:
            z, z_q, vq_loss = self.encode(inp), None, x.new_zeros(())
        zinb = self.reconstruction_loss(z[:b], counts, size_factors, batch)
        loss = zinb
        if vq:
            loss = loss + vq_weight * (self.reconstruction_loss(z_q[:b], counts, size_factors, batch) + vq_loss)
        kl = x.new_zeros(())
        if gamma > 0:
            log_q = self.log_q(z[b:])
            source = log_q.detach() if target_log_q is None else target_log_q.detach()
            p = dec_target(source.exp()) if target is None else target(source).to(log_q.dtype)
            kl = kl_clustering_loss(p, log_q)
            loss = loss + gamma * kl
        return {"loss": loss, "zinb": zinb.detach(), "kl": kl.detach(), "vq": vq_loss.detach()}

    @torch.no_grad()
    def set_centers(self, centers: torch.Tensor) -> None:
        """Replace the DEC centres (their number may change)."""
        self.centers = nn.Parameter(centers.to(self.centers.device, self.centers.dtype).clone())
