"""VoteNet building blocks against naive loops: FPS, ball query, heading bins, 3D NMS, loss targets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from t4p.models.votenet import (
    angle_to_class,
    ball_query,
    class_to_angle,
    farthest_point_sample,
    floor_height,
    nms_3d,
    scene_rows,
    voxel_representatives,
)


def naive_fps(xyz: np.ndarray, m: int) -> list[int]:
    picked = [0]
    for _ in range(m - 1):
        d = [min(float(((xyz[i] - xyz[j]) ** 2).sum()) for j in picked) for i in range(len(xyz))]
        picked.append(int(np.argmax(d)))
    return picked


def test_fps_matches_naive_and_ignores_padding():
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(2, 60, 3))
    got = farthest_point_sample(torch.from_numpy(xyz), 12)
    for b in range(2):
        assert got[b].tolist() == naive_fps(xyz[b], 12)
    valid = torch.ones(2, 60, dtype=torch.bool)
    valid[1, 40:] = False  # padding rows of a shorter scene
    got = farthest_point_sample(torch.from_numpy(xyz), 12, valid)
    assert got[1].tolist() == naive_fps(xyz[1, :40], 12)


def test_ball_query_matches_naive():
    rng = np.random.default_rng(1)
    xyz = rng.uniform(0, 1, size=(1, 80, 3))
    centres = xyz[:, :5]
    got = ball_query(torch.from_numpy(centres), torch.from_numpy(xyz), 0.3, 6)[0]
    for p in range(5):
        near = [i for i in range(80) if ((xyz[0, i] - centres[0, p]) ** 2).sum() <= 0.09][:6]
        want = near + [near[0]] * (6 - len(near))
        assert got[p].tolist() == want


def test_scene_rows_groups_points_by_scene():
    scene = torch.tensor([1, 0, 1, 1, 0])
    rows, valid = scene_rows(scene, 2)
    assert rows[0][valid[0]].tolist() == [1, 4]
    assert rows[1][valid[1]].tolist() == [0, 2, 3]


def test_voxel_representatives_are_each_voxels_first_point():
    point2voxel = torch.tensor([2, 0, 2, 4, 0, 4, 4])  # voxels 1 and 3 hold no point
    first = {}
    for row, v in enumerate(point2voxel.tolist()):  # naive reference: first occurrence per voxel
        first.setdefault(v, row)
    assert voxel_representatives(point2voxel, 5).tolist() == [first[v] for v in sorted(first)]  # [1, 0, 3]


def test_floor_height_is_a_low_quantile_of_the_valid_points():
    z = torch.tensor([[0.5, 0.1, 2.0, -9.0], [1.0, 3.0, 2.0, 0.0]])
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    # scene 0: valid heights 0.1, 0.5, 2.0; linear interpolation at q=0.5 gives the median 0.5
    assert floor_height(z, valid, q=0.5).tolist() == pytest.approx([0.5, 1.5])
    assert floor_height(z, valid, q=0.0).tolist() == pytest.approx([0.1, 0.0])  # padding (-9) ignored


@pytest.mark.parametrize("bins", [1, 12])
def test_heading_bins_round_trip(bins):
    angles = torch.linspace(-math.pi + 1e-4, math.pi, 101, dtype=torch.float64)
    cls, res = angle_to_class(angles, bins)
    assert (cls >= 0).all() and (cls < bins).all()
    assert (res.abs() <= math.pi / bins + 1e-9).all()
    back = class_to_angle(cls, res, bins)
    np.testing.assert_allclose(np.angle(np.exp(1j * (back - angles).numpy())), 0, atol=1e-9)


def test_nms_matches_naive_greedy():
    rng = np.random.default_rng(2)
    n = 30
    boxes = np.concatenate([rng.uniform(0, 3, (n, 3)), rng.uniform(0.5, 1.5, (n, 3)),
                            rng.uniform(-math.pi, math.pi, (n, 1))], 1)
    scores = rng.random(n)
    classes = rng.integers(0, 2, n)
    b, s, c = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes)
    from t4p.models.box_ops import iou_3d

    iou = iou_3d(b, b).numpy()
    keep = []
    for i in np.argsort(-scores):
        if all(not (iou[i, j] > 0.25 and classes[i] == classes[j]) for j in keep):
            keep.append(int(i))
    assert nms_3d(b, s, 0.25, c).tolist() == keep


def test_loss_targets_near_far_and_votes():
    """Objectness labels: < 0.3 m positive, > 0.6 m negative, in between ignored; the vote loss is
    the L1 distance to the nearest containing box's centre."""
    from t4p.config import DetConfig
    from t4p.models.votenet import DetOutput
    from t4p.models.votenet_loss import assign, objectness_targets, pad_boxes, vote_loss

    gt, mask = pad_boxes([torch.tensor([[0.0, 0, 0, 1, 1, 1, 0, 2]])], "cpu")
    centres = torch.tensor([[[0.1, 0, 0], [0.45, 0, 0], [2.0, 0, 0]]])
    dist, idx = assign(centres, gt, mask)
    label, m = objectness_targets(dist, DetConfig())
    assert label.tolist() == [[1, 0, 0]] and m.tolist() == [[1.0, 0.0, 1.0]]
    z = torch.zeros(1, 1, 1)
    out = DetOutput(seed_xyz=torch.tensor([[[0.2, 0.2, 0.0], [3.0, 3.0, 3.0]]]),
                    vote_xyz=torch.tensor([[[0.1, -0.1, 0.05], [0.0, 0.0, 0.0]]]),
                    centres=centres, objectness=z, centre=z, heading_scores=z, heading_res_norm=z,
                    size_scores=z, size_res_norm=z, sem_logits=z)
    # only the first seed is inside the box: |0.1| + |-0.1| + |0.05| = 0.25
    assert vote_loss(out, gt, mask).item() == pytest.approx(0.25, rel=1e-5)


def test_decoding_the_loss_targets_gives_perfect_map():
    """Head outputs set to the loss's own targets (heading bin + residual, size cluster + residual, class)
    decode to the ground-truth boxes: predict() + AP then give mAP 1 (oriented IoU)."""
    from t4p.config import Config
    from t4p.models.votenet import DetOutput, predict
    from t4p.tasks.det_metrics import DetEvaluator

    cfg = Config()
    nh, k = cfg.det.num_heading_bins, 3
    mean_sizes = torch.tensor([[1.0, 0.5, 0.8], [0.5, 0.5, 0.9], [2.0, 0.9, 0.8]])
    gt = torch.tensor([[0.0, 0.0, 0.4, 1.2, 0.6, 0.8, 0.7, 0], [3.0, 1.0, 0.45, 0.5, 0.4, 0.9, -2.5, 1],
                       [1.0, 4.0, 0.4, 2.2, 1.0, 0.8, 3.1, 2]])
    p = len(gt)
    hcls, hres = angle_to_class(gt[:, 6], nh)
    heading_scores = torch.full((1, p, nh), -10.0)
    heading_scores[0, torch.arange(p), hcls] = 10.0
    heading_res_norm = torch.zeros(1, p, nh)
    heading_res_norm[0, torch.arange(p), hcls] = hres / (math.pi / nh)
    cls = gt[:, 7].long()
    size_scores = torch.full((1, p, k), -10.0)
    size_scores[0, torch.arange(p), cls] = 10.0
    size_res_norm = torch.zeros(1, p, k, 3)
    size_res_norm[0, torch.arange(p), cls] = (gt[:, 3:6] - mean_sizes[cls]) / mean_sizes[cls]
    out = DetOutput(seed_xyz=torch.zeros(1, 1, 3), vote_xyz=torch.zeros(1, 1, 3), centres=gt[None, :, :3],
                    objectness=torch.tensor([[[-5.0, 5.0]] * p]), centre=gt[None, :, :3],
                    heading_scores=heading_scores, heading_res_norm=heading_res_norm, size_scores=size_scores,
                    size_res_norm=size_res_norm, sem_logits=size_scores.clone())
    pred = predict(out, mean_sizes, cfg)[0]
    ev = DetEvaluator(["a", "b", "c"], oriented=True)
    ev.add(pred, gt)
    scores = ev.compute()
    assert scores["map50"] == pytest.approx(1.0)
