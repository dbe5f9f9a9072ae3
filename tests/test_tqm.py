"""TQM (Eq. 5-11) against torch's own multi-head attention and a per-point loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from t4p.models.tqm import TextQueryingModule


@pytest.mark.parametrize("heads", [1, 2])
def test_tqm_matches_multihead_attention(heads):
    torch.manual_seed(0)
    d, d_out, n, k = 16, 8, 11, 5
    tqm = TextQueryingModule(d, d_out, heads=heads, mlp_ratio=2.0, alpha_init=0.7, beta_init=0.3).eval()
    for bn in (tqm.norm_3d, tqm.norm_text, tqm.mlp_norm):  # non-trivial running statistics
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    h3d, h3d_hat, text = torch.randn(n, d_out), torch.randn(n, d), torch.randn(k, d)

    mha = torch.nn.MultiheadAttention(d, heads, bias=False, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([tqm.w_q.weight, tqm.w_k.weight, tqm.w_v.weight]))
        mha.out_proj.weight.copy_(tqm.w_o.weight)
    x, t = tqm.norm_3d(h3d_hat), tqm.norm_text(text)
    attn, _ = mha(x[None], t[None], t[None])
    h_attn = attn[0] + tqm.w_o.bias
    ref = 0.7 * h3d + 0.3 * tqm.fc_reduce(tqm.mlp(tqm.mlp_norm(h_attn)))
    torch.testing.assert_close(tqm(h3d, h3d_hat, text), ref, atol=1e-5, rtol=1e-5)


def test_tqm_single_head_per_point_loop():
    torch.manual_seed(1)
    d, n, k = 8, 4, 3
    tqm = TextQueryingModule(d, 4).eval()
    h3d_hat, text = torch.randn(n, d), torch.randn(k, d)
    out = tqm.query_text(h3d_hat, text)
    t = tqm.norm_text(text)
    for i in range(n):  # Eq. 5-9 one query at a time
        q = tqm.w_q(tqm.norm_3d(h3d_hat)[i])
        w = F.softmax(torch.stack([q @ tqm.w_k(t[j]) for j in range(k)]) / math.sqrt(d), dim=0)
        v = sum(w[j] * tqm.w_v(t[j]) for j in range(k))
        ref = tqm.mlp(tqm.mlp_norm(tqm.w_o(v)[None]))[0]
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=1e-5)


def test_tqm_default_init_is_identity_and_learns_beta():
    torch.manual_seed(2)
    tqm = TextQueryingModule(8, 4)  # alpha = 1, beta = 0
    h3d = torch.randn(6, 4)
    out = tqm(h3d, torch.randn(6, 8), torch.randn(3, 8))
    torch.testing.assert_close(out, h3d)
    out.sum().backward()
    assert tqm.beta.grad is not None and tqm.beta.grad.abs() > 0
    with pytest.raises(ValueError, match="tqm_heads"):
        TextQueryingModule(10, 4, heads=3)
