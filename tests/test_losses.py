"""Losses against naive references: Eq. 14 double loop, brute-force neighbour search, pair lifting."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from t4p.losses import (
    aux_loss,
    aux_pseudo_labels,
    framewise_infonce,
    lift_pairs,
    pixel_voxel_infonce,
    sample_pairs,
)


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _naive_eq14(f2d, f3d, tau, weights=None):
    """Eq. 14 literally: for each pair (i, j) in S, two log-ratios over the pairs of S."""
    a, b = f2d.double().numpy(), f3d.double().numpy()
    n = len(a)
    w = np.ones(n) if weights is None else weights.double().numpy()
    total = 0.0
    for k in range(n):
        pos = math.exp(_cos(a[k], b[k]) / tau)
        den_3d = sum(math.exp(_cos(a[k], b[p]) / tau) for p in range(n))
        den_2d = sum(math.exp(_cos(a[q], b[k]) / tau) for q in range(n))
        total += w[k] * (math.log(pos / den_3d) + math.log(pos / den_2d))
    return -total / w.sum()


@pytest.mark.parametrize("weighted", [False, True])
def test_infonce_matches_double_loop(weighted):
    g = torch.Generator().manual_seed(0)
    f2d, f3d = torch.randn(9, 5, generator=g), torch.randn(9, 5, generator=g)
    w = torch.randint(1, 4, (9,), generator=g).float() if weighted else None
    got = pixel_voxel_infonce(f2d, f3d, tau=0.4, weights=w)
    assert math.isclose(float(got), _naive_eq14(f2d, f3d, 0.4, w), rel_tol=1e-5)


def test_framewise_infonce_is_pair_weighted_mean_of_frames():
    g = torch.Generator().manual_seed(1)
    f2d, f3d = torch.randn(10, 4, generator=g), torch.randn(10, 4, generator=g)
    frame = torch.tensor([0] * 6 + [1] * 4)
    ref = (6 * _naive_eq14(f2d[:6], f3d[:6], 0.4) + 4 * _naive_eq14(f2d[6:], f3d[6:], 0.4)) / 10
    assert math.isclose(float(framewise_infonce(f2d, f3d, frame, 0.4)), ref, rel_tol=1e-5)


def test_infonce_low_for_aligned_features():
    f = torch.eye(8)
    aligned = float(pixel_voxel_infonce(f, f, 0.4))
    shuffled = float(pixel_voxel_infonce(f, f.roll(1, 0), 0.4))
    assert aligned < shuffled


def test_sample_pairs_caps_each_frame_and_is_seeded():
    frame = torch.tensor([0] * 50 + [2] * 7 + [3] * 30)
    idx = sample_pairs(frame, 20, torch.Generator().manual_seed(3))
    counts = Counter(frame[idx].tolist())
    assert counts == {0: 20, 2: 7, 3: 20}
    assert len(set(idx.tolist())) == len(idx)
    again = sample_pairs(frame, 20, torch.Generator().manual_seed(3))
    assert torch.equal(idx, again)


def test_lift_pairs_merges_duplicates_with_counts():
    # image 4x6, CLIP grid 2x3: cell = (v // 2) * 3 + u // 2
    pair_frame = torch.tensor([0, 0, 0, 0, 1, 1])
    v = torch.tensor([0, 1, 3, 0, 0, 2])
    u = torch.tensor([0, 1, 5, 1, 0, 2])
    pair_pixel = v * 6 + u
    pair_voxel = torch.tensor([0, 1, 2, 3, 0, 4])
    voxel_to_coarse = torch.tensor([7, 7, 8, -1, 9])
    lifted = lift_pairs(pair_frame, pair_pixel, pair_voxel, (4, 6), (2, 3), voxel_to_coarse, stride=2)
    naive = Counter()
    for f, vv, uu, vox in zip(pair_frame.tolist(), v.tolist(), u.tolist(), pair_voxel.tolist(), strict=True):
        if voxel_to_coarse[vox] >= 0:
            naive[(f, (vv // 2) * 3 + uu // 2, int(voxel_to_coarse[vox]))] += 1
    got = {
        (int(f), int(c), int(x)): int(n)
        for f, c, x, n in zip(lifted.frame, lifted.cell, lifted.voxel, lifted.count, strict=True)
    }
    assert got == dict(naive)
    assert got[(0, 0, 7)] == 2


def _brute_force_labels(enc, stride, vox, labels, voxel_size, rng):
    out = []
    for e in enc:
        found = []
        for x, lab in zip(vox, labels, strict=True):
            if x[0] != e[0] or lab < 0:
                continue
            if rng == 0:
                inside = all(e[i] <= x[i] < e[i] + stride for i in (1, 2, 3))
            else:
                dist = np.linalg.norm((x[1:] + 0.5) - (e[1:] + stride / 2)) * voxel_size
                inside = dist <= rng
            if inside:
                found.append(int(lab))
        if not found:
            out.append(-100)
        else:
            c = Counter(found)
            best = max(c.values())
            out.append(min(k for k, n in c.items() if n == best))
    return out


@pytest.mark.parametrize("aux_range", [0.0, 0.3, 0.9])
def test_aux_pseudo_labels_match_brute_force(aux_range):
    rng = np.random.default_rng(0)
    stride, voxel_size = 4, 0.05
    vox = np.concatenate([rng.integers(0, 2, (200, 1)), rng.integers(0, 12, (200, 3))], axis=1)
    vox = np.unique(vox, axis=0)
    labels = rng.integers(-1, 4, len(vox))
    labels[labels < 0] = -100
    enc = np.unique(np.concatenate([vox[:, :1], vox[:, 1:] // stride * stride], axis=1), axis=0)
    enc = np.concatenate([enc, [[0, 40, 40, 40], [1, 100, 0, 0]]])  # no neighbours: skipped
    got = aux_pseudo_labels(
        torch.from_numpy(enc), stride, torch.from_numpy(vox), torch.from_numpy(labels), voxel_size, aux_range
    )
    ref = _brute_force_labels(enc, stride, vox, labels, voxel_size, aux_range)
    assert got.tolist() == ref
    assert got[-1] == -100 and got[-2] == -100


def test_aux_loss_matches_manual_cross_entropy_and_skips_unlabelled():
    g = torch.Generator().manual_seed(4)
    h, t = torch.randn(5, 6, generator=g), torch.randn(3, 6, generator=g)
    labels = torch.tensor([0, 2, -100, 1, 2])
    total = 0.0
    for i in [0, 1, 3, 4]:
        s = [_cos(h[i].numpy(), t[j].numpy()) / 0.07 for j in range(3)]
        total += -(s[labels[i]] - math.log(sum(math.exp(x) for x in s)))
    assert math.isclose(float(aux_loss(h, t, labels, 0.07)), total / 4, rel_tol=1e-5)
    assert float(aux_loss(h, t, torch.full((5,), -100), 0.07)) == 0.0
