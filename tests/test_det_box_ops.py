"""Oriented 3D box IoU against independent references, and hand-computed axis-aligned cases.

References: (1) an exact-to-quadrature integral of the intersection's vertical chord length over x
(no polygon clipping involved: for convex polygons the chord at x is [max of lower edges, min of
upper edges]); (2) a Monte-Carlo estimate with 1e6 samples per pair as a loose sanity check.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from t4p.models.box_ops import bev_corners, box_corners, iou_3d, paired_iou_3d, points_in_boxes


def _chord(corners: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper y of a convex polygon (4, 2) on vertical lines x = xs (empty: lo > hi)."""
    lo, hi = np.full(len(xs), np.inf), np.full(len(xs), -np.inf)
    for k in range(4):
        (x0, y0), (x1, y1) = corners[k], corners[(k + 1) % 4]
        if x0 == x1:
            continue
        t = (xs - x0) / (x1 - x0)
        on = (t >= 0) & (t <= 1)
        y = y0 + t * (y1 - y0)
        lo = np.where(on, np.minimum(lo, y), lo)
        hi = np.where(on, np.maximum(hi, y), hi)
    return lo, hi


def reference_bev_area(ca: np.ndarray, cb: np.ndarray, n: int = 200_000) -> float:
    """Intersection area by midpoint integration of the chord length (piecewise linear in x)."""
    x0 = max(ca[:, 0].min(), cb[:, 0].min())
    x1 = min(ca[:, 0].max(), cb[:, 0].max())
    if x1 <= x0:
        return 0.0
    h = (x1 - x0) / n
    xs = x0 + (np.arange(n) + 0.5) * h
    la, ua = _chord(ca, xs)
    lb, ub = _chord(cb, xs)
    return float(np.clip(np.minimum(ua, ub) - np.maximum(la, lb), 0, None).sum() * h)


def reference_iou(a: np.ndarray, b: np.ndarray) -> float:
    ca = bev_corners(torch.from_numpy(a)).numpy()
    cb = bev_corners(torch.from_numpy(b)).numpy()
    zo = max(0.0, min(a[2] + a[5] / 2, b[2] + b[5] / 2) - max(a[2] - a[5] / 2, b[2] - b[5] / 2))
    inter = reference_bev_area(ca, cb) * zo
    return inter / (a[3:6].prod() + b[3:6].prod() - inter)


def monte_carlo_iou(a: np.ndarray, b: np.ndarray, n: int, rng: np.random.Generator) -> float:
    """Sample the union's bounding box; IoU = |in a and in b| / |in a or in b|."""
    ca, cb = box_corners(torch.from_numpy(np.stack([a, b]))).numpy()
    allc = np.concatenate([ca, cb])
    pts = rng.uniform(allc.min(0), allc.max(0), size=(n, 3))
    inside = points_in_boxes(torch.from_numpy(pts), torch.from_numpy(np.stack([a, b]))).numpy()
    return float((inside[:, 0] & inside[:, 1]).sum() / max(1, (inside[:, 0] | inside[:, 1]).sum()))


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    centre = rng.uniform(-0.6, 0.6, size=(n, 3))
    size = rng.uniform(0.3, 2.0, size=(n, 3))
    heading = rng.uniform(-math.pi, math.pi, size=(n, 1))
    return np.concatenate([centre, size, heading], 1)


def test_oriented_iou_matches_chord_integral_reference():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 40), random_boxes(rng, 40)
    ours = paired_iou_3d(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    ref = np.array([reference_iou(a[i], b[i]) for i in range(len(a))])
    assert (ref > 0.05).sum() >= 20, "the random pairs should mostly overlap"
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)
    assert np.abs(ours - ref).max() < 1e-5  # the quadrature is far more accurate than the 1e-3 criterion


def test_oriented_iou_matches_monte_carlo():
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 3), random_boxes(rng, 3)
    ours = paired_iou_3d(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    mc = np.array([monte_carlo_iou(a[i], b[i], 1_000_000, rng) for i in range(3)])
    # MC standard error with 1e6 samples over the union's bounding box is about 1e-3 (4 sigma: 4e-3)
    np.testing.assert_allclose(ours, mc, atol=4e-3)


def test_all_pairs_matches_paired_and_is_symmetric():
    rng = np.random.default_rng(2)
    a, b = torch.from_numpy(random_boxes(rng, 7)), torch.from_numpy(random_boxes(rng, 5))
    full = iou_3d(a, b)
    for i in range(7):
        for j in range(5):
            assert full[i, j].item() == pytest.approx(paired_iou_3d(a[i : i + 1], b[j : j + 1]).item(), abs=1e-12)
    np.testing.assert_allclose(iou_3d(b, a).numpy(), full.T.numpy(), atol=1e-9)


def _box(cx, cy, cz, length, w, h, heading=0.0):
    return torch.tensor([[cx, cy, cz, length, w, h, heading]], dtype=torch.float64)


@pytest.mark.parametrize("oriented", [True, False])
def test_axis_aligned_cases_by_hand(oriented):
    unit = _box(0, 0, 0, 1, 1, 1)
    assert paired_iou_3d(unit, unit, oriented).item() == pytest.approx(1.0)
    assert paired_iou_3d(unit, _box(3, 0, 0, 1, 1, 1), oriented).item() == 0.0  # disjoint
    assert paired_iou_3d(unit, _box(0, 0, 1, 1, 1, 1), oriented).item() == 0.0  # touching faces
    # shifted by half a side: intersection 1/2, union 3/2
    assert paired_iou_3d(unit, _box(0.5, 0, 0, 1, 1, 1), oriented).item() == pytest.approx(1 / 3)
    # contained: a 1x1x1 box inside a 2x2x2 box -> 1/8
    assert paired_iou_3d(unit, _box(0.2, -0.3, 0.1, 2, 2, 2), oriented).item() == pytest.approx(1 / 8)
    # quarter overlap in x and y, full in z: 1/4 / (2 - 1/4) = 1/7
    assert paired_iou_3d(unit, _box(0.5, 0.5, 0, 1, 1, 1), oriented).item() == pytest.approx(1 / 7)


def test_rotation_cases_by_hand():
    unit = _box(0, 0, 0, 1, 1, 1)
    # a square turned by 90 degrees is the same square; by 45 degrees the intersection is an octagon:
    # area = 1 - 4 * (corner triangle with legs (sqrt(2) - 1) / 2 ... ) = 2 (sqrt 2 - 1)
    assert paired_iou_3d(unit, _box(0, 0, 0, 1, 1, 1, math.pi / 2)).item() == pytest.approx(1.0)
    octagon = 2 * (math.sqrt(2) - 1)
    assert paired_iou_3d(unit, _box(0, 0, 0, 1, 1, 1, math.pi / 4)).item() == pytest.approx(octagon / (2 - octagon))
    # the axis-aligned path ignores headings
    assert paired_iou_3d(unit, _box(0, 0, 0, 1, 1, 1, math.pi / 4), oriented=False).item() == pytest.approx(1.0)


def test_heading_convention_is_counter_clockwise_yaw():
    """heading = CCW yaw: the length axis is (cos h, sin h) (VoteNet's files store -h)."""
    box = _box(1.0, 2.0, 0.0, 2.0, 0.2, 0.2, math.pi / 6)
    axis = np.array([math.cos(math.pi / 6), math.sin(math.pi / 6), 0.0])
    pts = torch.from_numpy(np.array([[1.0, 2.0, 0.0] + 0.9 * axis, [1.0, 2.0, 0.0] - 0.9 * axis]))
    assert points_in_boxes(pts, box).all()
    other = np.array([math.cos(math.pi / 6), -math.sin(math.pi / 6), 0.0])
    assert not points_in_boxes(torch.from_numpy(np.array([[1.0, 2.0, 0.0] + 0.9 * other])), box).any()
    corners = box_corners(box)[0]
    assert corners[:, 2].min().item() == pytest.approx(-0.1) and corners[:, 2].max().item() == pytest.approx(0.1)
