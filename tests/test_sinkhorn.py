"""Log-domain Sinkhorn: marginals, agreement with a plain-domain numpy reference, stability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sccluster.ot import BalancedTarget, sinkhorn, sinkhorn_target


def _reference(scores: np.ndarray, r: np.ndarray, c: np.ndarray, n_iters: int = 2000) -> np.ndarray:
    """Textbook Sinkhorn-Knopp on the kernel exp(scores), plain domain."""
    kernel = np.exp(scores)
    c = c * r.sum() / c.sum()
    u, v = np.ones_like(r), np.ones_like(c)
    for _ in range(n_iters):
        u = r / (kernel @ v)
        v = c / (kernel.T @ u)
    return u[:, None] * kernel * v[None, :]


def test_marginals_hold():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 5, generator=gen) * 3
    rows = torch.full((64,), 1 / 64, dtype=torch.float64)
    cols = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05], dtype=torch.float64)
    plan = sinkhorn(scores, rows, cols, n_iters=500, tol=1e-9).double()
    np.testing.assert_allclose(plan.sum(0).numpy(), cols.numpy(), atol=1e-6)
    np.testing.assert_allclose(plan.sum(1).numpy(), rows.numpy(), atol=1e-6)
    assert torch.all(plan >= 0)


def test_matches_plain_domain_reference():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(20, 4))
    r = rng.uniform(0.5, 1.5, size=20)
    c = rng.uniform(0.5, 1.5, size=4)
    plan = sinkhorn(torch.as_tensor(scores), torch.as_tensor(r), torch.as_tensor(c), n_iters=2000, tol=1e-12)
    np.testing.assert_allclose(plan.numpy(), _reference(scores, r, c), rtol=1e-6, atol=1e-10)


def test_tiny_epsilon_is_finite():
    """Scores / ε with ε = 1e-4 overflow exp() in the plain domain but not here."""
    gen = torch.Generator().manual_seed(2)
    cost = torch.rand(128, 6, generator=gen)
    scores = -cost / 1e-4  # entries down to -1e4
    rows = torch.full((128,), 1 / 128, dtype=torch.float64)
    cols = torch.full((6,), 1 / 6, dtype=torch.float64)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        assert not np.all(np.isfinite(_reference(scores.double().numpy(), rows.numpy(), cols.numpy(), 10)))
    plan = sinkhorn(scores, rows, cols, n_iters=1000, tol=1e-8)
    assert torch.all(torch.isfinite(plan))
    np.testing.assert_allclose(plan.double().sum(0).numpy(), cols.numpy(), atol=1e-6)


def test_target_rows_are_distributions_and_follow_proportions():
    gen = torch.Generator().manual_seed(3)
    log_q = torch.log_softmax(torch.randn(256, 4, generator=gen), dim=1)
    props = torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64)
    p = sinkhorn_target(log_q, props, power=2.0, n_iters=500)
    np.testing.assert_allclose(p.sum(1).numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose((p.double().mean(0)).numpy(), props.numpy(), atol=1e-3)


def test_balanced_target_matches_proportions_then_tracks_the_batch():
    gen = torch.Generator().manual_seed(5)
    log_q = torch.log_softmax(3 * torch.randn(512, 5, generator=gen), dim=1)
    before = log_q.clone()
    start = np.array([[0.4, 0.3, 0.1, 0.1, 0.1]])
    target = BalancedTarget.from_log_q(np.log(start), momentum=0.9, n_iters=500, estimate="soft")
    np.testing.assert_allclose(target.pi.numpy(), start[0], atol=1e-12)
    p = target(log_q)
    assert torch.equal(log_q, before)  # input untouched
    # columns follow the proportions it held when called; rows are distributions
    np.testing.assert_allclose(p.double().mean(0).numpy(), start[0], atol=1e-3)
    np.testing.assert_allclose(p.sum(1).numpy(), 1.0, atol=1e-5)
    # then the proportions move 10 % of the way to the batch's mean soft assignment
    expected = 0.9 * start[0] + 0.1 * log_q.exp().double().mean(0).numpy()
    np.testing.assert_allclose(target.pi.numpy(), expected, atol=1e-12)
    assert abs(float(target.pi.sum()) - 1.0) < 1e-6


def test_unbalanced_plan_holds_rows_and_interpolates_columns():
    gen = torch.Generator().manual_seed(11)
    scores = torch.randn(64, 4, generator=gen, dtype=torch.float64)
    rows = torch.full((64,), 1 / 64, dtype=torch.float64)
    cols = torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64)
    balanced = sinkhorn(scores, rows, cols, n_iters=2000, tol=1e-10)
    free = torch.softmax(scores, dim=1) / 64  # each row of exp(S), normalised to its marginal

    def relaxed(rho: float) -> torch.Tensor:
        plan = sinkhorn(scores, rows, cols, n_iters=2000, tol=1e-10, marginal_relaxation=rho)
        np.testing.assert_allclose(plan.sum(1).numpy(), rows.numpy(), atol=1e-8)  # rows always held
        return plan

    np.testing.assert_allclose(relaxed(1e-6).numpy(), free.numpy(), atol=1e-6)
    np.testing.assert_allclose(relaxed(1e6).numpy(), balanced.numpy(), atol=1e-5)
    # in between, the big column gets more than without constraint, less than with it held
    assert free.sum(0)[0] < relaxed(1.0).sum(0)[0] < cols[0]


def test_relaxed_target_pulls_unequal_clusters_less_towards_equal_sizes():
    # 900 cells put 0.7 on cluster 0 and 100 cells 0.7 on cluster 1; the mean soft assignment
    # (0.66 / 0.34) is flatter than that partition (0.9 / 0.1)
    log_q = torch.tensor([[0.7, 0.3]] * 900 + [[0.3, 0.7]] * 100, dtype=torch.float64).log()
    pi = log_q.exp().mean(0)
    held = BalancedTarget(pi, n_iters=500)(log_q).mean(0)
    relaxed = BalancedTarget(pi, n_iters=500, marginal_relaxation=1.0)(log_q).mean(0)
    sharpened = torch.softmax(2 * log_q, dim=1).mean(0)  # q^2 normalised, no column constraint
    np.testing.assert_allclose(held.numpy(), pi.numpy(), atol=1e-3)
    assert held[0] < relaxed[0] < sharpened[0]


def test_sharpened_estimate_tracks_the_target_masses_before_the_column_constraint():
    # the same unequal partition as above: 0.9 / 0.1 of the cells, each 0.7 sure of its cluster
    log_q = torch.tensor([[0.7, 0.3]] * 900 + [[0.3, 0.7]] * 100, dtype=torch.float64).log()
    soft = BalancedTarget.from_log_q(log_q.numpy(), n_iters=500, estimate="soft")
    sharp = BalancedTarget.from_log_q(log_q.numpy(), n_iters=500, estimate="sharpened")
    unconstrained = torch.softmax(2 * log_q, dim=1).mean(0)  # q^2 per row, normalised
    np.testing.assert_allclose(soft.pi.numpy(), log_q.exp().mean(0).numpy(), atol=1e-12)
    np.testing.assert_allclose(sharp.pi.numpy(), unconstrained.numpy(), atol=1e-12)
    assert soft.pi[0] < sharp.pi[0] < 0.9  # flatter than the partition, but less so than q
    # with those columns the balanced plan leaves the sharpened masses as they are
    np.testing.assert_allclose(sharp(log_q).mean(0).numpy(), unconstrained.numpy(), atol=1e-3)
    # and the update moves towards the batch's sharpened masses (from a wrong start)
    moved = BalancedTarget(torch.tensor([0.5, 0.5]), momentum=0.5, estimate="sharpened")
    moved(log_q)
    np.testing.assert_allclose(moved.pi.numpy(), 0.5 * 0.5 + 0.5 * unconstrained.numpy(), atol=1e-12)


def test_unknown_estimate_is_rejected():
    with pytest.raises(ValueError, match="estimate"):
        BalancedTarget(torch.tensor([0.5, 0.5]), estimate="hard")
