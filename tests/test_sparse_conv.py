"""Sparse convolutions of each backend against dense conv3d / conv_transpose3d at the active sites."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests._sparse_helpers import BACKENDS, at_sites, backend, densify, random_sparse, sparse_kernel

ATOL = 1e-4


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("kernel_size,stride", [(3, 1), (2, 2), (3, 2), (5, 1)])
def test_conv_matches_dense_conv3d(name, kernel_size, stride):
    be = backend(name)
    c_in, c_out = 4, 5
    coords, feats = random_sparse(c_in, seed=kernel_size * 10 + stride)
    dense_w = torch.randn(c_out, c_in, kernel_size, kernel_size, kernel_size, dtype=torch.float64).float()
    conv = be.Conv(c_in, c_out, kernel_size, stride)
    with torch.no_grad():
        conv.kernel.copy_(sparse_kernel(dense_w))
    feats_s = feats.clone().requires_grad_()
    y = conv(be.tensor(coords, feats_s))
    assert y.stride == stride

    x_dense = densify(coords, feats).requires_grad_()
    w_dense = dense_w.clone().requires_grad_()
    # ME convention: output o (multiple of stride) reads o + offsets; odd kernels centred, even from 0
    padding = (kernel_size - 1) // 2 if kernel_size % 2 == 1 else 0
    y_dense = F.conv3d(x_dense, w_dense, stride=stride, padding=padding)
    ref = at_sites(y_dense, y.coords, stride)
    # the active output sites are exactly the cells holding an input site
    expected_sites = torch.unique(torch.div(coords.long()[:, 1:], stride, rounding_mode="floor")
                                  + coords.long()[:, :1] * 1000, dim=0)
    assert len(y.coords) == len(expected_sites)
    torch.testing.assert_close(y.feats, ref, atol=ATOL, rtol=0)

    grad = torch.randn_like(y.feats)
    (y.feats * grad).sum().backward()
    (ref * grad).sum().backward()
    torch.testing.assert_close(feats_s.grad, at_sites(x_dense.grad, coords), atol=ATOL, rtol=0)
    torch.testing.assert_close(conv.kernel.grad, sparse_kernel(w_dense.grad), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", BACKENDS)
def test_transposed_conv_matches_dense_conv_transpose3d(name):
    be = backend(name)
    c_in, c_out = 4, 3
    coords, feats = random_sparse(c_in, seed=7)
    fine = be.tensor(coords, feats)
    down = be.Conv(c_in, c_in, 2, 2)
    coarse = down(fine)
    coarse_feats = torch.randn(len(coarse), c_in).requires_grad_()
    coarse = coarse.with_feats(coarse_feats)

    dense_w = torch.randn(c_in, c_out, 2, 2, 2)  # conv_transpose3d layout (C_in, C_out, k, k, k)
    tconv = be.ConvTranspose(c_in, c_out, 2, 2)
    with torch.no_grad():
        tconv.kernel.copy_(sparse_kernel(dense_w.transpose(0, 1)))
    y = tconv(coarse)
    assert y.stride == 1
    torch.testing.assert_close(y.coords, fine.coords)  # output onto the finer tensor's coordinates

    x_dense = densify(coarse.coords, coarse_feats.detach(), stride=2).requires_grad_()
    w_dense = dense_w.clone().requires_grad_()
    ref = at_sites(F.conv_transpose3d(x_dense, w_dense, stride=2), y.coords)
    torch.testing.assert_close(y.feats, ref, atol=ATOL, rtol=0)

    grad = torch.randn_like(y.feats)
    (y.feats * grad).sum().backward()
    (ref * grad).sum().backward()
    torch.testing.assert_close(coarse_feats.grad, at_sites(x_dense.grad, coarse.coords, 2), atol=ATOL, rtol=0)
    torch.testing.assert_close(tconv.kernel.grad, sparse_kernel(w_dense.grad.transpose(0, 1)), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", BACKENDS)
def test_pointwise_conv_bias_and_batchnorm(name):
    be = backend(name)
    coords, feats = random_sparse(6, seed=3)
    conv = be.Conv(6, 4, 1, bias=True)
    x = be.tensor(coords, feats)
    y = conv(x)
    torch.testing.assert_close(y.feats, feats @ conv.kernel.reshape(6, 4) + conv.bias.reshape(1, 4))
    bn = be.BatchNorm(4)
    z = bn(y)
    ref = torch.nn.functional.batch_norm(y.feats, None, None, bn.bn.weight, bn.bn.bias, training=True)
    torch.testing.assert_close(z.feats, ref, atol=1e-5, rtol=0)
    cat = be.cat(z, y)
    assert cat.feats.shape == (len(coords), 8)
    torch.testing.assert_close(cat.coords, x.coords)


def test_torch_schedule_paths_match_dense(monkeypatch):
    """Exact pattern groups, padded groups and per-offset leftovers all agree with conv3d."""
    from t4p.sparse import torch_backend as tb

    monkeypatch.setattr(tb, "MIN_GROUP_ROWS", 4)
    monkeypatch.setattr(tb, "N_CANDIDATES", 12)
    monkeypatch.setattr(tb, "MAX_PAD_FACTOR", 1.6)
    monkeypatch.setattr(tb, "DENSE_MACS_MAX", -1)  # the pattern schedule even for this small map
    torch.manual_seed(0)  # independent of the tests that ran before
    be = backend("torch")
    coords, feats = random_sparse(3, occupancy=0.5, seed=11)
    keep = coords[:, 0] == 1  # batch 0: a full plane (repeated neighbour patterns), batch 1: random
    plane = torch.stack(torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij"), -1).reshape(-1, 2)
    plane = torch.cat([torch.zeros(64, 1), plane, torch.full((64, 1), 2)], 1).to(torch.int32)
    coords = torch.cat([plane, coords[keep]])
    feats = torch.randn(len(coords), 3)
    x = be.tensor(coords, feats.requires_grad_())
    plan, _ = tb.conv_plan(x, 3, 1, False)
    kinds = {("per-offset" if g.accumulate else "padded" if g.padded else "exact") for g in plan.groups(3, 2)}
    assert kinds == {"per-offset", "padded", "exact"}
    dense_w = torch.randn(2, 3, 3, 3, 3).requires_grad_()
    conv = be.Conv(3, 2, 3)
    with torch.no_grad():
        conv.kernel.copy_(sparse_kernel(dense_w))
    y = conv(x)
    x_dense = densify(coords, feats.detach()).requires_grad_()
    ref = at_sites(F.conv3d(x_dense, dense_w, padding=1), coords)
    torch.testing.assert_close(y.feats, ref, atol=ATOL, rtol=0)
    upstream = torch.randn_like(ref)  # O(1) gradients: float32 sums of ~50 terms stay well inside ATOL
    (y.feats * upstream).sum().backward()
    (ref * upstream).sum().backward()
    torch.testing.assert_close(feats.grad, at_sites(x_dense.grad, coords), atol=ATOL, rtol=0)
    # the kernel gradient sums over all rows: compare relative to its scale
    torch.testing.assert_close(conv.kernel.grad, sparse_kernel(dense_w.grad), atol=ATOL * 10, rtol=1e-5)
