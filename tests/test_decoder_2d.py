"""g2D decoder shapes/gradients and the depth loss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from t4p.models.decoder_2d import SILOG_LAMBDA, Decoder2D, depth_loss


def test_decoder_shapes_positive_depth_and_gradients():
    torch.manual_seed(0)
    dec = Decoder2D(64, 96, out_size=(240, 320))
    x = torch.randn(2, 64, 7, 10)
    z, depth = dec(x)
    assert z.shape == (2, 96, 240, 320) and depth.shape == (2, 1, 240, 320)
    assert (depth > 0).all()
    (z.mean() + depth.mean()).backward()
    assert all(p.grad is not None for p in dec.parameters())
    z2, d2 = dec(torch.randn(1, 64, 1, 2), out_size=(60, 80))  # odd grids, explicit size
    assert z2.shape == (1, 96, 60, 80) and d2.shape == (1, 1, 60, 80)


def _silog_by_hand(pred, target, lam):
    per_image = []
    for p, t in zip(pred, target):
        g = [math.log(a) - math.log(b) for a, b in zip(p.flatten().tolist(), t.flatten().tolist()) if b > 0]
        if g:
            m = sum(g) / len(g)
            m2 = sum(v * v for v in g) / len(g)
            per_image.append(m2 - lam * m * m)
    return sum(per_image) / len(per_image)


def test_silog_matches_hand_computation_and_ignores_invalid():
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(3, 1, 4, 5, generator=gen) * 3 + 0.1
    target = torch.rand(3, 1, 4, 5, generator=gen) * 3 + 0.1
    target[0, 0, :2] = 0.0  # invalid pixels
    target[2] = 0.0  # an image with no valid depth at all
    loss = depth_loss(pred, target, "silog")
    assert loss.item() == pytest.approx(_silog_by_hand(pred, target, SILOG_LAMBDA), rel=1e-5)
    changed = pred.clone()
    changed[target == 0] = 100.0
    assert depth_loss(changed, target, "silog").item() == pytest.approx(loss.item(), rel=1e-6)
    # lambda = 1: fully scale invariant
    assert depth_loss(target[:2].clamp_min(0.5) * 3.7, target[:2].clamp_min(0.5), lam=1.0).item() < 1e-6


def test_l1_and_no_valid_pixels():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    target = torch.tensor([[[[1.5, 0.0], [2.0, 4.0]]]])
    assert depth_loss(pred, target, "l1").item() == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    empty = depth_loss(pred, torch.zeros_like(target), "silog")
    assert empty.item() == 0.0
    empty.backward()
    assert pred.grad is not None
    with pytest.raises(ValueError, match="depth_kind"):
        depth_loss(pred, target, "l2")
    with pytest.raises(ValueError, match="differ"):
        depth_loss(pred, target[..., :1], "l1")
