"""Zero-inflated negative binomial likelihood and decoder head for raw counts."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

_LOG_MEAN_MIN = math.log(1e-5)
_LOG_MEAN_MAX = math.log(1e6)


def zinb_nll(
    counts: torch.Tensor,
    log_mean: torch.Tensor,
    disp: torch.Tensor,
    pi_logits: torch.Tensor,
) -> torch.Tensor:
    """Mean negative log-likelihood of raw counts under a ZINB, computed in log space.

    The NB log-gamma terms vanish at zero counts, so they are evaluated only on the non-zero
    entries (single-cell counts are mostly zeros); the result equals the dense formula.

    Parameters
    ----------
    counts
        Raw counts ``(B, G)`` (non-negative integers stored as float).
    log_mean
        Log of the NB mean, already including the cell's size factor, ``(B, G)``.
    disp
        NB inverse dispersion θ > 0, ``(B, G)`` or ``(G,)``.
    pi_logits
        Logits of the zero-inflation probability π, ``(B, G)``.

    Returns
    -------
    Scalar: the NLL averaged over all entries.
    """
    eps = 1e-8
    theta = disp.expand_as(log_mean)
    log_theta = torch.log(theta + eps)
    log_theta_mu = torch.logaddexp(log_theta, log_mean)  # log(θ + μ)
    # log NB(0) = θ (log θ - log(θ + μ))
    log_nb_zero = theta * (log_theta - log_theta_mu)
    log_one_minus_pi = F.softplus(pi_logits)
    # zero entries: log(π + (1 - π) NB(0)) with π = sigmoid(l)
    loglik = torch.logaddexp(pi_logits, log_nb_zero) - log_one_minus_pi
    # non-zero entries: log(1 - π) + log NB(x), evaluated only where x > 0
    nz = counts >= 0.5
    x, th = counts[nz], theta[nz]
    log_nb = (
        torch.lgamma(x + th)
        - torch.lgamma(th)
        - torch.lgamma(x + 1.0)
        + log_nb_zero[nz]
        + x * (log_mean[nz] - log_theta_mu[nz])
    )
    loglik = loglik.masked_scatter(nz, log_nb - log_one_minus_pi[nz])
    return -loglik.mean()


class ZINBDecoder(nn.Module):
    """Map an embedding to ZINB parameters over ``n_genes`` (DCA / scDeepCluster heads).

    ``forward(z, size_factors, batch=None)`` returns ``(log_mean, disp, pi_logits)``, each ``(B, G)``; the
    mean includes the size factor: ``mean = size_factor * exp(head(h))``, clamped to ``[1e-5, 1e6]``.

    With ``n_batches > 0`` the decoder is conditioned on each cell's batch (``batch``: ``(B,)`` integer
    codes), as count models of batched data are (scVI's covariate injection): the one-hot batch is
    concatenated to the embedding at the hidden layer and to the hidden units at the mean, dispersion and
    dropout heads, so each batch has its own gene-wise log-mean offset, dispersion and dropout offsets on
    top of what the embedding decodes to, and the embedding need not encode the batch. ``n_batches=0``
    (default) builds exactly the unconditioned decoder.
    """

    def __init__(
        self, n_input: int, n_genes: int, n_hidden: int = 256, dropout: float = 0.0, n_batches: int = 0
    ) -> None:
        super().__init__()
        self.n_batches = int(n_batches)
        self.hidden = nn.Sequential(
            nn.Linear(n_input + self.n_batches, n_hidden),
            nn.LayerNorm(n_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
        )
        self.mean = nn.Linear(n_hidden + self.n_batches, n_genes)
        self.disp = nn.Linear(n_hidden + self.n_batches, n_genes)
        self.pi = nn.Linear(n_hidden + self.n_batches, n_genes)

    def forward(
        self, z: torch.Tensor, size_factors: torch.Tensor, batch: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.n_batches:
            if batch is None:
                msg = f"this decoder is conditioned on {self.n_batches} batches; pass the batch code of every cell"
                raise ValueError(msg)
            onehot = F.one_hot(batch.long(), self.n_batches).to(z.dtype)  # (B, n_batches)
            h = torch.cat([self.hidden(torch.cat([z, onehot], dim=1)), onehot], dim=1)
        else:
            h = self.hidden(z)
        log_mean = self.mean(h).clamp(_LOG_MEAN_MIN, _LOG_MEAN_MAX) + torch.log(size_factors)[:, None]
        disp = F.softplus(self.disp(h)).clamp(1e-4, 1e4)
        return log_mean, disp, self.pi(h)
