"""Bipartite cell-to-anchor attention: each cell attends to ``M`` learnable anchors, never to other cells.

Cost is ``O(B·M·dim)`` per batch of ``B`` cells and no ``(B, B)`` tensor is formed, so a cell's
output does not depend on the other cells of its batch (in eval mode). Compared with the public
BGFormer code, the heads are merged per cell (transpose, then reshape), logits are scaled by
``1/sqrt(d_h)``, and keys/values are projections of the anchors with gradients flowing into them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class AnchorAttention(nn.Module):
    """Multi-head attention from cells (queries) to ``n_anchors`` learnable anchor tokens.

    Parameters
    ----------
    dim
        Width of the cell representation (and of the anchors).
    n_anchors
        Number of anchors ``M``.
    n_heads
        Number of heads ``H``; ``dim`` must be divisible by it.
    dropout
        Dropout on the attention weights (training mode only).

    Attributes
    ----------
    anchors
        Learnable anchor matrix ``C`` of shape ``(M, dim)``. Keys are ``W_k·C`` and values ``W_v·C``.
    """

    def __init__(self, dim: int, n_anchors: int, n_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % n_heads != 0:
            msg = f"dim={dim} must be divisible by n_heads={n_heads}"
            raise ValueError(msg)
        self.dim = dim
        self.n_anchors = n_anchors
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.anchors = nn.Parameter(torch.randn(n_anchors, dim) / math.sqrt(dim))
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        """Attend from cells ``x`` ``(B, dim)`` to the anchors.

        Returns the attention output ``(B, dim)`` (no residual), and with ``return_weights`` also
        the per-head attention weights ``(B, H, M)``, which sum to one over anchors.
        """
        b = x.shape[0]
        h, dh = self.n_heads, self.head_dim
        q = self.q_proj(x).view(b, h, dh)  # (B, H, dh)
        k = self.k_proj(self.anchors).view(self.n_anchors, h, dh)  # (M, H, dh)
        v = self.v_proj(self.anchors).view(self.n_anchors, h, dh)  # (M, H, dh)
        logits = torch.einsum("bhd,mhd->bhm", q, k) * self.scale  # (B, H, M)
        weights = F.softmax(logits, dim=-1)
        out = torch.einsum("bhm,mhd->bhd", self.attn_drop(weights), v)  # (B, H, dh): heads per cell
        out = self.out_proj(out.reshape(b, h * dh))
        if return_weights:
            return out, weights
        return out


class AnchorBlock(nn.Module):
    """Pre-norm transformer block with anchor attention instead of self-attention.

    ``x = x + dropout(attn(LN(x)))``, then ``x = x + FFN(LN(x))`` with
    ``FFN = Linear(dim, ffn_mult·dim) → GELU → dropout → Linear(ffn_mult·dim, dim) → dropout``.
    """

    def __init__(
        self, dim: int, n_anchors: int, n_heads: int = 4, ffn_mult: int = 2, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = AnchorAttention(dim, n_anchors, n_heads=n_heads, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_mult * dim, dim),
            nn.Dropout(dropout),
        )

    @property
    def anchors(self) -> nn.Parameter:
        """The anchors of this block's attention, ``(M, dim)``."""
        return self.attn.anchors

    def attention_input(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised representation the attention queries are computed from."""
        return self.norm1(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.ffn(self.norm2(x))
