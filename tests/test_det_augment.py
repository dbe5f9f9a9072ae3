"""Detection targets under augmentation (issue 15, H3) and VoteNet's per-dataset augmentation.

Oracle: the box corners are fed through the augmentation as points. The points are transformed
exactly as the scene is, so the axis-aligned bounds of the transformed corners are the true
axis-aligned box (ScanNet), and the transformed corners of an oriented box are the corners of the
true oriented box (SUN RGB-D), whatever the code does to the boxes themselves. The dataset-level
tests recover the drawn transform from the points themselves (a least-squares linear map from the
raw to the augmented cloud) and build the reference targets from it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from t4p.data.augment import AugmentSpec, augment_points
from t4p.data.datasets import augment_spec
from t4p.data.prepare import load_arrays
from t4p.models.box_ops import box_corners, points_in_boxes
from t4p.recipes import get_recipe

BOXES = np.array([[1.0, 2.0, 0.5, 2.0, 0.5, 1.0, 0.0, 3], [-1.5, 0.5, 0.4, 0.8, 1.6, 0.8, 0.0, 5]], np.float32)


def _corners(boxes: np.ndarray) -> np.ndarray:
    return box_corners(torch.from_numpy(boxes[:, :7]).double()).numpy().reshape(-1, 3)  # (8K, 3)


def _hand_corners(boxes: np.ndarray) -> np.ndarray:
    """(K, 8+) -> (K, 8, 3): centre + rotz(heading) (+-l/2, +-w/2, +-h/2), written out without t4p.models."""
    out = np.zeros((len(boxes), 8, 3))
    for k, (cx, cy, cz, length, w, h, yaw) in enumerate(np.asarray(boxes, np.float64)[:, :7]):
        for j, (sx, sy, sz) in enumerate(itertools.product((-0.5, 0.5), repeat=3)):
            x, y = sx * length, sy * w
            out[k, j] = (
                cx + math.cos(yaw) * x - math.sin(yaw) * y,
                cy + math.sin(yaw) * x + math.cos(yaw) * y,
                cz + sz * h,
            )
    return out


def _augment(spec: AugmentSpec, boxes: np.ndarray, seed: int, corners=None):
    xyz = _corners(boxes) if corners is None else corners.reshape(-1, 3)
    rgb = np.zeros((len(xyz), 3), np.uint8)
    moved, _, out = augment_points(xyz, rgb, spec, np.random.default_rng(seed), boxes)
    return moved.reshape(len(boxes), 8, 3).astype(np.float64), out


@pytest.mark.parametrize("rotate_max, scale", [(math.radians(5), None), (math.pi, None), (math.pi, (0.85, 1.15))])
def test_axis_aligned_targets_are_the_bounds_of_the_rotated_corners(rotate_max, scale):
    spec = augment_spec(get_recipe("votenet_scannet", ["data.aug_color_jitter=0"]))
    spec.rotate_max = rotate_max
    if scale is not None:  # a user's scale augmentation on ScanNet: the bounds scale with the points
        spec.scale_min, spec.scale_max = scale
    for seed in range(100):
        corners, boxes = _augment(spec, BOXES, seed, corners=_hand_corners(BOXES))
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
        True,
        False,
        pytest.approx(math.pi / 6),
        0.85,
        1.15,
    )
    assert not sun.axis_aligned_boxes
    scan = augment_spec(get_recipe("votenet_scannet"))
    assert (scan.flip, scan.flip_y, scan.rotate_max, scan.scale_min, scan.scale_max) == (
        True,
        True,
        pytest.approx(math.radians(5)),
        1.0,
        1.0,
    )
    assert scan.axis_aligned_boxes
    s3dis = augment_spec(get_recipe("s3dis_semseg"))
    assert (s3dis.rotate_max, s3dis.scale_min, s3dis.scale_max, s3dis.flip_y) == (
        pytest.approx(math.pi),
        0.9,
        1.1,
        False,
    )


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


# --------------------------------------------------------------------------- through the datasets (synthetic scenes)


def _synthetic(tmp_path, recipe: str, overrides: list[str]):
    from t4p.data.datasets import make_dataset

    cfg = get_recipe(
        recipe,
        [
            f"train.out_dir={tmp_path}",
            "data.dataset=synthetic",
            "data.synth_scenes=2",
            "data.num_points=0",
            "data.aug_color_jitter=0",
            "data.voxel_size=0.1",
            *overrides,
        ],
    )
    ds = make_dataset(cfg, "train")
    assert ds.augment is not None and len(ds) >= 1
    return ds


def _draws(ds, n: int):
    """(raw arrays, augmented item, A) for n augmentation draws; A (3, 3) is the linear map raw -> augmented
    xyz recovered from the points (the augmentation has no translation; num_points=0 keeps the order)."""
    for seed in range(n):
        torch.manual_seed(seed)
        i = seed % len(ds)
        raw, item = load_arrays(ds.files[i]), ds[i]
        x = raw["xyz"].astype(np.float64)
        a = np.linalg.lstsq(x, item["point_xyz"].astype(np.float64), rcond=None)[0].T
        assert np.abs(x @ a.T - item["point_xyz"]).max() < 1e-4  # the points did move by one linear map
        yield raw, item, a


@pytest.mark.parametrize(
    "overrides", [[], ["data.aug_rotate_max=3.141592653589793", "data.aug_scale_min=0.85", "data.aug_scale_max=1.15"]]
)
def test_scannet_dataset_targets_follow_the_recovered_transform(tmp_path, overrides):
    """votenet_scannet's augmentation (and a full turn with scaling): the target is the axis-aligned bound of the
    raw box's corners moved by the transform the points underwent; every instance stays inside its box."""
    ds = _synthetic(tmp_path, "votenet_scannet", overrides)
    assert ds.augment.axis_aligned_boxes
    flips = set()
    for raw, item, a in _draws(ds, 12):
        if abs(a[0, 1]) < 0.1:  # a small turn: the diagonal's signs say which axes were mirrored
            flips.add((bool(a[0, 0] < 0), bool(a[1, 1] < 0)))
        moved = _hand_corners(raw["boxes"]) @ a.T  # (K, 8, 3)
        lo, hi = moved.min(1), moved.max(1)
        boxes = item["boxes"]
        np.testing.assert_allclose(boxes[:, :3], (lo + hi) / 2, atol=1e-4)
        np.testing.assert_allclose(boxes[:, 3:6], hi - lo, atol=1e-4)
        assert np.all(boxes[:, 6] == 0) and np.array_equal(boxes[:, 7], raw["boxes"][:, 7])
        was_in = points_in_boxes(torch.from_numpy(raw["xyz"]), torch.from_numpy(raw["boxes"][:, :7]), margin=1e-3)
        now_in = points_in_boxes(torch.from_numpy(item["point_xyz"]), torch.from_numpy(boxes[:, :7]), margin=1e-3)
        held = 0
        for inst in np.unique(raw["instances"][raw["instances"] >= 0]):  # an instance inside its raw box stays in
            sel = torch.from_numpy(raw["instances"] == inst)
            homes = was_in[sel].all(0)  # (K,) raw boxes holding every point of the instance
            if homes.any():
                held += 1
                assert (now_in[sel].all(0) & homes).any(), f"instance {inst} left its box"
        assert held >= 3
    if not overrides:  # votenet_scannet: +-5 deg, both mirrors drawn (each p 0.5)
        assert {x for x, _ in flips} == {False, True} and {y for _, y in flips} == {False, True}, flips


@pytest.mark.parametrize("overrides", [[], ["data.aug_flip_y=true", "data.aug_rotate_max=3.141592653589793"]])
def test_sunrgbd_dataset_heading_convention(tmp_path, overrides):
    """Oriented boxes: centre A c, size x the scale, length axis A (cos h, sin h) (x mirror: pi - h, y mirror: -h);
    and the points inside a box (t4p.models.box_ops convention) are the same before and after augmentation."""
    ds = _synthetic(tmp_path, "votenet_sunrgbd", overrides)
    assert not ds.augment.axis_aligned_boxes
    mirrored = 0
    for raw, item, a in _draws(ds, 12):
        mirrored += np.linalg.det(a) < 0
        rb, boxes = raw["boxes"].astype(np.float64), item["boxes"].astype(np.float64)
        scale = abs(np.linalg.det(a)) ** (1 / 3)
        np.testing.assert_allclose(boxes[:, :3], rb[:, :3] @ a.T, atol=1e-4)
        np.testing.assert_allclose(boxes[:, 3:6], rb[:, 3:6] * scale, rtol=1e-4)
        axis = np.stack([np.cos(rb[:, 6]), np.sin(rb[:, 6]), np.zeros(len(rb))], 1) @ a.T
        dh = np.angle(np.exp(1j * (boxes[:, 6] - np.arctan2(axis[:, 1], axis[:, 0]))))
        np.testing.assert_allclose(dh, 0, atol=1e-4)
        assert np.all(np.abs(boxes[:, 6]) <= np.pi + 1e-6)
        before = torch.from_numpy(raw["xyz"]), torch.from_numpy(raw["boxes"][:, :7])
        after = torch.from_numpy(item["point_xyz"]), torch.from_numpy(item["boxes"][:, :7])
        surely_in, maybe_in = points_in_boxes(*before, margin=-2e-3), points_in_boxes(*before, margin=2e-3)
        assert surely_in.sum() > 1000  # the boxes hold objects
        assert not (surely_in & ~points_in_boxes(*after, margin=5e-4)).any()
        assert not (~maybe_in & points_in_boxes(*after, margin=-5e-4)).any()
    assert 0 < mirrored < 12
