"""Student-t soft assignments, the DEC target and the KL clustering loss (tensors only)."""

from __future__ import annotations

import torch


def log_student_t(z: torch.Tensor, centers: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Log of the Student-t soft assignment q_ik ∝ (1 + ‖z_i − μ_k‖² / α)^(−(α+1)/2).

    Returns ``log q`` of shape ``(B, K)``, normalised over clusters in log space (no eps needed).
    """
    dist2 = torch.cdist(z, centers).pow(2)  # (B, K)
    logits = -(alpha + 1.0) / 2.0 * torch.log1p(dist2 / alpha)
    return torch.log_softmax(logits, dim=1)


def dec_target(q: torch.Tensor) -> torch.Tensor:
    """DEC auxiliary target p_ik ∝ q_ik² / f_k with f_k = Σ_i q_ik (computed on the given batch)."""
    weight = q.pow(2) / q.sum(dim=0, keepdim=True).clamp_min(1e-12)
    return weight / weight.sum(dim=1, keepdim=True)


def kl_clustering_loss(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(P ‖ Q) averaged over cells, computed from ``log q`` (always ≥ 0)."""
    p = p.detach()
    return (p * (torch.log(p.clamp_min(1e-12)) - log_q)).sum(dim=1).mean()
