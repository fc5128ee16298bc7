"""The networks' forward and loss (LossOutput), as the training loop calls them."""

from __future__ import annotations

import pytest
import torch

from sccluster.nn import BGFormerNet, LossOutput, SiameseNet, dec_target, kl_clustering_loss


def _bgformer_batch(b: int = 10, g: int = 20) -> dict:
    x = torch.randn(b, g)
    return {"x": x, "x_noisy": x + 0.1 * torch.randn(b, g), "counts": torch.poisson(torch.ones(b, g)),
            "size_factors": torch.ones(b), "batch_codes": None}  # fmt: skip


def test_bgformer_loss_output():
    torch.manual_seed(0)
    net = BGFormerNet(20, d_model=16, n_latent=4, n_anchors=4, n_heads=2, n_layers=1, n_clusters=3, gamma=0.5)
    net.set_centers(torch.randn(3, 4))
    batch = _bgformer_batch()
    pre = net.loss(batch, net(batch))
    assert isinstance(pre, LossOutput) and set(pre.terms) == {"zinb", "kl", "vq"}
    assert float(pre.terms["kl"]) == 0.0 and torch.allclose(pre.total, pre.terms["zinb"])  # no target: no KL
    batch["target_log_q"] = net.target_log_q(batch).detach()
    out = net(batch)
    losses = net.loss(batch, out)
    assert out["log_q"].shape == (10, 3) and losses.terms["kl"] > 0
    torch.testing.assert_close(losses.total, losses.terms["zinb"] + 0.5 * losses.terms["kl"])
    p = dec_target(batch["target_log_q"].exp())
    torch.testing.assert_close(losses.terms["kl"], kl_clustering_loss(p, out["log_q"]).detach())
    net.cluster_target = lambda log_q: torch.full_like(log_q, 1 / 3)  # any log q -> P map
    uniform = net.loss(batch, out)
    expected = kl_clustering_loss(torch.full((10, 3), 1 / 3), out["log_q"]).detach()
    torch.testing.assert_close(uniform.terms["kl"], expected)


def _siamese_batch(b: int = 12, g: int = 20, p: int = 6) -> dict:
    x = torch.randn(b, g)
    return {"x": x, "x1": x + torch.randn(b, g), "x2": x - torch.randn(b, g), "h": torch.randn(4 * b, p),
            "h_clean": torch.randn(b, p), "x0": torch.randn(b, p), "counts": torch.poisson(torch.ones(b, g)),
            "size_factors": torch.ones(b), "batch_codes": None}  # fmt: skip


def test_siamese_loss_output_and_named_weights():
    torch.manual_seed(0)
    batch = _siamese_batch()

    def losses(**kwargs):
        torch.manual_seed(1)
        net = SiameseNet(20, 6, n_latent=8, n_hidden=16, n_anchors=4, n_clusters=3, **kwargs)
        return net, net.loss(batch, net(batch))

    net, base = losses()
    assert set(base.terms) == {"zinb", "graph", "corr"}
    torch.testing.assert_close(base.total, sum(base.terms.values()))
    assert not any(t.requires_grad for t in base.terms.values()) and base.total.requires_grad
    _, no_edges = losses(edge_weight=0.0)
    _, more_edges = losses(edge_weight=1.0)  # the default is 0.5: the graph term moves linearly in it
    step_up = more_edges.terms["graph"] - base.terms["graph"]
    torch.testing.assert_close(step_up, base.terms["graph"] - no_edges.terms["graph"])
    _, no_sample = losses(sample_correlation_weight=0.0)
    assert float(no_sample.terms["corr"]) < float(base.terms["corr"])
    _, off = losses(use_correlation=False)
    assert set(off.terms) == {"zinb", "graph"}
    _, doubled = losses(correlation_weight=2.0)
    torch.testing.assert_close(doubled.terms["corr"], 2 * base.terms["corr"])

    batch["target_log_q"] = net.target_log_q(batch).detach()
    clustered = net.loss(batch, net(batch))
    assert set(clustered.terms) == {"zinb", "graph", "corr", "cluster"} and clustered.terms["cluster"] >= 0


@pytest.mark.parametrize("net", ["bgformer", "siamese"])
def test_loss_backpropagates_to_the_centres(net):
    torch.manual_seed(0)
    if net == "bgformer":
        module = BGFormerNet(20, d_model=16, n_latent=4, n_anchors=4, n_heads=2, n_layers=1)
        batch = _bgformer_batch()
    else:
        module, batch = SiameseNet(20, 6, n_latent=8, n_hidden=16, n_anchors=4), _siamese_batch()
    module.set_centers(torch.randn(3, module.centers.shape[1]))
    batch["target_log_q"] = module.target_log_q(batch).detach()
    module.loss(batch, module(batch)).total.backward()
    assert module.centers.grad is not None and module.centers.grad.abs().sum() > 0
