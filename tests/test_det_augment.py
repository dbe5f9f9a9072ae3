"""Detection targets under augmentation (issue 15, H3) and VoteNet's per-dataset augmentation.

Oracle: the box corners are fed through the augmentation as points. The points are transformed
exactly as the scene is, so the axis-aligned bounds of the transformed corners are the true
axis-aligned box (ScanNet), and the transformed corners of an oriented box are the corners of the
true oriented box (SUN RGB-D), whatever the code does to the boxes themselves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from t4p.data.augment import AugmentSpec, augment_points
from t4p.data.datasets import augment_spec
from t4p.models.box_ops import box_corners
from t4p.recipes import get_recipe

BOXES = np.array([[1.0, 2.0, 0.5, 2.0, 0.5, 1.0, 0.0, 3], [-1.5, 0.5, 0.4, 0.8, 1.6, 0.8, 0.0, 5]], np.float32)


def _corners(boxes: np.ndarray) -> np.ndarray:
    return box_corners(torch.from_numpy(boxes[:, :7]).double()).numpy().reshape(-1, 3)  # (8K, 3)


def _augment(spec: AugmentSpec, boxes: np.ndarray, seed: int):
    xyz = _corners(boxes)
    rgb = np.zeros((len(xyz), 3), np.uint8)
    moved, _, out = augment_points(xyz, rgb, spec, np.random.default_rng(seed), boxes)
    return moved.reshape(len(boxes), 8, 3).astype(np.float64), out


@pytest.mark.parametrize("rotate_max", [math.radians(5), math.pi])
def test_axis_aligned_targets_are_the_bounds_of_the_rotated_corners(rotate_max):
    spec = augment_spec(get_recipe("votenet_scannet", ["data.aug_color_jitter=0"]))
    spec.rotate_max = rotate_max
    for seed in range(100):
        corners, boxes = _augment(spec, BOXES, seed)
        lo, hi = corners.min(1), corners.max(1)  # (K, 3): the naive axis-aligned bounds
        np.testing.assert_allclose(boxes[:, :3], (lo + hi) / 2, atol=1e-5, err_msg=f"seed {seed}: centre")
        np.testing.assert_allclose(boxes[:, 3:6], hi - lo, atol=1e-5, err_msg=f"seed {seed}: size")
        assert np.all(boxes[:, 6] == 0) and np.array_equal(boxes[:, 7], BOXES[:, 7])


@pytest.mark.parametrize("flip_y", [False, True])
def test_oriented_targets_keep_the_size_and_turn_the_heading(flip_y):
    spec = augment_spec(get_recipe("votenet_sunrgbd", ["data.aug_color_jitter=0", f"data.aug_flip_y={flip_y}"]))
    oriented = BOXES.copy()
    oriented[:, 6] = [0.3, -2.0]
    for seed in range(100):
        corners, boxes = _augment(spec, oriented, seed)
        scale = np.linalg.norm(corners[0, 1] - corners[0, 0]) / oriented[0, 3]  # corners 0, 1: an edge of length l
        np.testing.assert_allclose(boxes[:, 3:6], oriented[:, 3:6] * scale, rtol=1e-5)
        # the same solid: every transformed corner is a corner of the augmented box (a flip reverses order)
        drawn = _corners(boxes).reshape(len(boxes), 8, 3)
        dist = np.linalg.norm(corners[:, :, None] - drawn[:, None], axis=-1).min(-1)  # (K, 8)
        assert dist.max() < 1e-4, f"seed {seed}: heading or centre does not follow the points"


def test_votenet_augmentation_per_dataset():
    sun = augment_spec(get_recipe("votenet_sunrgbd"))
    assert (sun.flip, sun.flip_y, sun.rotate_max, sun.scale_min, sun.scale_max) == (
        True, False, pytest.approx(math.pi / 6), 0.85, 1.15)
    assert not sun.axis_aligned_boxes
    scan = augment_spec(get_recipe("votenet_scannet"))
    assert (scan.flip, scan.flip_y, scan.rotate_max, scan.scale_min, scan.scale_max) == (
        True, True, pytest.approx(math.radians(5)), 1.0, 1.0)
    assert scan.axis_aligned_boxes
    s3dis = augment_spec(get_recipe("s3dis_semseg"))
    assert (s3dis.rotate_max, s3dis.scale_min, s3dis.scale_max, s3dis.flip_y) == (pytest.approx(math.pi), 0.9, 1.1,
                                                                                    False)


def test_angles_stay_inside_the_configured_range():
    spec = AugmentSpec(flip=False, rotate_max=math.radians(5), scale_min=1.0, scale_max=1.0, color_jitter=0.0)
    box = BOXES[:1].copy()
    for seed in range(50):
        _, out = _augment(spec, box, seed)
        assert abs(out[0, 6]) <= math.radians(5) + 1e-6


def test_use_color_false_feeds_a_constant(tmp_path):
    from t4p.data.datasets import make_dataset

    args = [f"train.out_dir={tmp_path}", "data.synth_scenes=2", "data.augment=false"]
    with_color = make_dataset(get_recipe("smoke_det", args), "train")[0]["feats"]
    without = make_dataset(get_recipe("smoke_det", [*args, "data.use_color=false"]), "train")[0]["feats"]
    assert with_color.shape == without.shape and with_color.std() > 0.01
    assert np.array_equal(without, np.ones_like(without))
