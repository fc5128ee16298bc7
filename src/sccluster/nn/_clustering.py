"""Student-t soft assignments, the DEC target, its snapshot and the KL clustering loss (tensors only)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


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


class TargetSnapshot:
    """Frozen copy of a network that supplies the clustering target's soft assignments.

    :meth:`log_q` returns ``assign(copy, *inputs)``, the Student-t ``log q`` of a batch under the
    copy (eval mode, no gradient), and refreshes the copy from ``net`` every ``interval`` calls,
    starting with the first. Between refreshes the target of a cell does not move with the network
    being trained; this is DEC's target update interval, and it keeps self-training from chasing its
    own predictions away from the initial clusters.

    Parameters
    ----------
    net
        The network being trained.
    interval
        Calls between refreshes (1: the target follows the live network at every step).
    assign
        ``assign(network, *inputs) -> log q`` of shape ``(B, K)``.
    """

    def __init__(self, net: nn.Module, interval: int, assign: Callable[..., torch.Tensor]) -> None:
        self.net = net
        self.interval = int(interval)
        self.assign = assign
        self.calls = 0
        self.frozen: nn.Module | None = None

    def log_q(self, *inputs: Any) -> torch.Tensor:
        """Target ``log q`` of the batch ``inputs`` under the current snapshot."""
        if self.calls % self.interval == 0:
            self.frozen = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.calls += 1
        with torch.no_grad():
            return self.assign(self.frozen, *inputs)
