"""ZINB likelihood, Student-t assignments and the KL clustering loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from sccluster.nn import ZINBDecoder, dec_target, kl_clustering_loss, log_student_t, zinb_nll


def test_zinb_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.poisson(3, size=(5, 7)).astype(np.float64)
    mu = rng.uniform(0.5, 10, size=x.shape)
    theta = rng.uniform(0.3, 5, size=x.shape)
    logits = rng.normal(size=x.shape)
    pi = 1 / (1 + np.exp(-logits))
    nb = stats.nbinom.pmf(x, theta, theta / (theta + mu))
    lik = np.where(x == 0, pi + (1 - pi) * nb, (1 - pi) * nb)
    got = zinb_nll(*(torch.tensor(a) for a in (x, np.log(mu), theta, logits)))
    assert float(got) == pytest.approx(-np.mean(np.log(lik)), rel=1e-6)


def test_zinb_decoder_gradients_reach_mean_head():
    torch.manual_seed(0)
    dec = ZINBDecoder(4, 6, n_hidden=8)
    z = torch.randn(3, 4)
    sf = torch.tensor([0.5, 1.0, 2.0])
    log_mean, disp, pi = dec(z, sf)
    assert log_mean.shape == disp.shape == pi.shape == (3, 6)
    zinb_nll(torch.ones(3, 6), log_mean, disp, pi).backward()
    assert dec.mean.weight.grad is not None and dec.mean.weight.grad.abs().sum() > 0


def test_student_t_and_kl():
    torch.manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    z = torch.tensor([[0.1, -0.1], [9.9, 10.2]])
    log_q = log_student_t(z, centers)
    q = log_q.exp()
    assert torch.allclose(q.sum(1), torch.ones(2))
    assert q[0, 0] > 0.99 and q[1, 1] > 0.99
    p = dec_target(q)
    assert torch.allclose(p.sum(1), torch.ones(2))
    assert float(kl_clustering_loss(q, log_q)) == pytest.approx(0.0, abs=1e-6)
    rand_log_q = torch.log_softmax(torch.randn(50, 3), dim=1)
    assert float(kl_clustering_loss(dec_target(rand_log_q.exp()), rand_log_q)) >= 0
