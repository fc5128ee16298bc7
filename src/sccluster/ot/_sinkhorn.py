"""Log-domain Sinkhorn-Knopp for (cells x clusters) transport plans."""

from __future__ import annotations

import torch


def sinkhorn(
    log_scores: torch.Tensor,
    row_marginals: torch.Tensor,
    col_marginals: torch.Tensor,
    *,
    n_iters: int = 100,
    tol: float = 1e-6,
    marginal_relaxation: float | None = None,
) -> torch.Tensor:
    """Entropic transport plan ``P = diag(u) exp(S) diag(v)`` with the given marginals.

    Everything runs on log potentials (``log u``, ``log v``), so very peaked scores (a tiny
    entropic epsilon, i.e. ``S = C / ε`` with large entries) neither overflow nor underflow, and no
    ``B x B`` diagonal matrix is formed: the cost is ``O(n_iters · B · K)``.

    Parameters
    ----------
    log_scores
        ``(B, K)`` log-kernel ``S`` (for example ``λ · log q``). ``-inf`` marks forbidden pairs; each
        row and column needs at least one finite entry.
    row_marginals
        ``(B,)`` positive target row sums.
    col_marginals
        ``(K,)`` non-negative target column sums; rescaled to the total of ``row_marginals``.
    n_iters
        Maximum number of (row, column) scaling rounds.
    tol
        Stop when the largest absolute row-sum error is below ``tol`` times the total mass.
    marginal_relaxation
        ``None``: balanced transport, the column sums are held. A positive ``ρ``: unbalanced
        transport (Chizat et al. 2018), the column constraint becomes a penalty ``ρ · KL(Pᵀ1 ‖ c)``
        relative to the entropic term, so each column update is damped by ``ρ / (ρ + 1)``. ``ρ → ∞``
        is the balanced plan; ``ρ → 0`` ignores the columns (each row of ``exp(S)`` normalised).

    Returns
    -------
    ``(B, K)`` plan (no gradient) whose row sums equal ``row_marginals`` within ``tol`` and whose
    column sums equal ``col_marginals`` (balanced) or lie between those and the unconstrained ones.
    """
    with torch.no_grad():
        s = log_scores.detach().to(torch.float64)
        r = row_marginals.detach().to(s)
        c = col_marginals.detach().to(s)
        total = r.sum()
        c = c * (total / c.sum())
        log_r = torch.log(r)
        log_c = torch.log(c)  # -inf for empty clusters: that column stays at zero mass
        log_u = torch.zeros_like(r)
        log_v = torch.zeros_like(c)
        damping = 1.0 if marginal_relaxation is None else marginal_relaxation / (marginal_relaxation + 1.0)
        for _ in range(int(n_iters)):
            log_u = log_r - torch.logsumexp(s + log_v[None, :], dim=1)
            log_v = damping * (log_c - torch.logsumexp(s + log_u[:, None], dim=0))
            log_v = torch.where(torch.isfinite(log_v), log_v, torch.full_like(log_v, -torch.inf))
            rows = torch.exp(torch.logsumexp(s + log_u[:, None] + log_v[None, :], dim=1))
            if torch.max(torch.abs(rows - r)) <= tol * total:
                break
        plan = torch.exp(s + log_u[:, None] + log_v[None, :])
    return plan.to(log_scores.dtype)


def sinkhorn_target(
    log_q: torch.Tensor,
    proportions: torch.Tensor,
    *,
    power: float = 2.0,
    n_iters: int = 100,
    tol: float = 1e-6,
    marginal_relaxation: float | None = None,
) -> torch.Tensor:
    """Clustering target ``(B, K)`` from the optimal-transport plan.

    The rows of the plan for ``q^power`` with uniform rows and the given cluster proportions as columns
    (held, or relaxed by ``marginal_relaxation``; see :func:`sinkhorn`), each row renormalised to a distribution.
    """
    b = log_q.shape[0]
    rows = torch.full((b,), 1.0 / b, dtype=torch.float64, device=log_q.device)
    plan = sinkhorn(
        power * log_q, rows, proportions, n_iters=n_iters, tol=tol, marginal_relaxation=marginal_relaxation
    )
    return plan / plan.sum(dim=1, keepdim=True).clamp_min(1e-30)
