"""Anchor attention: shapes, per-cell independence, normalisation, gradients, naive reference."""

from __future__ import annotations

import math

import pytest
import torch

from sccluster.nn import AnchorAttention, AnchorBlock


@pytest.fixture
def attn():
    torch.manual_seed(0)
    return AnchorAttention(dim=16, n_anchors=5, n_heads=4).eval()


def test_output_and_weight_shapes(attn):
    x = torch.randn(7, 16)
    out, w = attn(x, return_weights=True)
    assert out.shape == (7, 16)
    assert w.shape == (7, 4, 5)
    assert attn(x).shape == (7, 16)
    assert AnchorBlock(16, 5, n_heads=4)(x).shape == (7, 16)


def test_weights_sum_to_one_over_anchors(attn):
    _, w = attn(torch.randn(9, 16), return_weights=True)
    assert torch.all(w >= 0)
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(9, 4))


@pytest.mark.parametrize("module", ["attention", "block"])
def test_cell_output_independent_of_batch_mates(module):
    torch.manual_seed(1)
    mod = (
        AnchorAttention(16, 5, n_heads=4, dropout=0.5)
        if module == "attention"
        else AnchorBlock(16, 5, dropout=0.5)
    )
    mod.eval()
    x = torch.randn(10, 16)
    full = mod(x)
    alone = torch.cat([mod(x[i : i + 1]) for i in range(10)])
    torch.testing.assert_close(full, alone, rtol=1e-5, atol=1e-6)
    # replacing the other cells changes nothing for cell 0
    other = torch.cat([x[:1], torch.randn(9, 16) * 5])
    torch.testing.assert_close(mod(other)[0], full[0], rtol=1e-5, atol=1e-6)
    perm = torch.randperm(10)
    torch.testing.assert_close(mod(x[perm]), full[perm], rtol=1e-5, atol=1e-6)


def test_anchors_receive_gradients(attn):
    attn.train()
    out = attn(torch.randn(6, 16))
    out.pow(2).sum().backward()
    assert attn.anchors.grad is not None
    assert attn.anchors.grad.abs().sum() > 0


def _naive(attn: AnchorAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cell, per-head loop following the definition."""
    h, dh = attn.n_heads, attn.head_dim
    q_all = attn.q_proj(x)
    k_all = attn.k_proj(attn.anchors)
    v_all = attn.v_proj(attn.anchors)
    outs, weights = [], []
    for i in range(x.shape[0]):
        heads, ws = [], []
        for j in range(h):
            sl = slice(j * dh, (j + 1) * dh)
            logits = k_all[:, sl] @ q_all[i, sl] / math.sqrt(dh)
            w = torch.softmax(logits, dim=0)
            heads.append(w @ v_all[:, sl])
            ws.append(w)
        outs.append(attn.out_proj(torch.cat(heads)))
        weights.append(torch.stack(ws))
    return torch.stack(outs), torch.stack(weights)


def test_matches_naive_per_head_loop(attn):
    x = torch.randn(6, 16)
    out, w = attn(x, return_weights=True)
    ref_out, ref_w = _naive(attn, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w, ref_w, rtol=1e-5, atol=1e-6)


def test_logits_scaled_by_inverse_sqrt_head_dim(attn):
    x = torch.randn(4, 16)
    _, w = attn(x, return_weights=True)
    q = attn.q_proj(x).view(4, 4, 4)
    k = attn.k_proj(attn.anchors).view(5, 4, 4)
    raw = torch.einsum("bhd,mhd->bhm", q, k)
    torch.testing.assert_close(w, torch.softmax(raw / 2.0, dim=-1))  # sqrt(d_h) = sqrt(4)
    assert not torch.allclose(w, torch.softmax(raw, dim=-1))


def test_dim_must_divide_heads():
    with pytest.raises(ValueError, match="divisible"):
        AnchorAttention(10, 4, n_heads=4)
