"""Detection data through the readers and datasets: the real SUN RGB-D scene and synthetic VoteNet-layout
scenes; boxes drawn back into the point cloud (t4p.models.box_ops convention) enclose their points."""

from __future__ import annotations

import math
import pickle

import numpy as np
import torch

from t4p.models.box_ops import points_in_boxes


def _infos(shared_data):
    with open(shared_data / "sunrgbd" / "sunrgbd_infos_train.pkl", "rb") as f:
        return pickle.load(f)[0]["annos"]


def test_real_sunrgbd_scene_boxes_match_mmdet3d_infos(shared_data):
    """The reader's boxes (v2 labels) equal mmdetection3d's independent export of the same scene."""
    from t4p.data.sunrgbd import read_scene

    scene = read_scene(shared_data / "sunrgbd", "000001", label_version="v2")
    annos = _infos(shared_data)
    ref = annos["gt_boxes_upright_depth"]  # (3, 7) cx cy cz 2hl 2hw 2hh heading(VoteNet sign)
    assert scene.boxes[:, 7].astype(int).tolist() == list(annos["class"])  # bed 0, night_stand 7, dresser 6
    np.testing.assert_allclose(scene.boxes[:, :6], ref[:, :6], atol=1e-5)
    assert scene.xyz.shape == (50000, 3)
    # every box, drawn back, holds points of the scene (the bed ~3k, the small night stand ~60)
    counts = points_in_boxes(torch.from_numpy(scene.xyz), torch.from_numpy(scene.boxes[:, :7])).sum(0)
    assert (counts >= 40).all(), counts


def test_real_sunrgbd_heading_is_counter_clockwise(shared_data):
    """t4p's heading is the counter-clockwise yaw: the reader negates VoteNet's (and mmdet3d's 2020) sign."""
    from t4p.data.sunrgbd import read_scene

    scene = read_scene(shared_data / "sunrgbd", "000001", label_version="v2")
    ref = _infos(shared_data)["gt_boxes_upright_depth"]
    diff = np.angle(np.exp(1j * (scene.boxes[:, 6] + ref[:, 6])))  # ours = -VoteNet's, modulo 2 pi
    np.testing.assert_allclose(diff, 0, atol=1e-5)


def _det_cfg(tmp_path, classes: str, augment: bool):
    from t4p.recipes import get_recipe

    return get_recipe("smoke_det", [f"train.out_dir={tmp_path}", f"data.classes={classes}", "data.num_points=0",
                                    f"data.augment={str(augment).lower()}", "data.synth_scenes=2"])


def test_synthetic_scannet_instances_inside_their_boxes_after_augmentation(tmp_path):
    """Every instance's points lie in a box of the instance's class, after flip/rotation/scale (oriented boxes)."""
    from t4p.data.datasets import make_dataset

    cfg = _det_cfg(tmp_path, "scannet18", augment=True)
    ds = make_dataset(cfg, "train")
    for i in range(len(ds)):
        batch = ds.collate([ds[i]])
        boxes = batch.boxes[0]
        assert len(boxes) > 0
        assert not torch.allclose(boxes[:, 6], torch.zeros(len(boxes)))  # rotated: headings follow the points
        inside = points_in_boxes(batch.point_xyz, boxes[:, :7], margin=1e-3)  # (N, K)
        for inst in batch.point_instances.unique().tolist():
            sel = batch.point_instances == inst
            labels = batch.point_labels[sel]
            if inst < 0 or labels[0] < 0:
                continue
            same_class = boxes[:, 7].long() == labels[0]
            assert (inside[sel][:, same_class].all(0)).any(), f"instance {inst} is not inside any box of its class"


def test_synthetic_sunrgbd_oriented_boxes_enclose_their_objects(tmp_path):
    """The SUN RGB-D-layout boxes (oriented) hold the same room's instance points (from the ScanNet layout)."""
    from t4p.data.datasets import resolve_source
    from t4p.data.scannet_votenet import read_scene as read_votenet
    from t4p.data.sunrgbd import read_scene as read_sun

    cfg = _det_cfg(tmp_path, "sunrgbd10", augment=False)
    _, sun_root, _ = resolve_source(cfg)
    scan_root = sun_root.parent / "scannet_votenet"
    checked = 0
    for i, name in enumerate(("scene0000_00", "scene0001_00")):
        sun = read_sun(sun_root, f"{i + 1:06d}")
        scan = read_votenet(scan_root, name)
        xyz = torch.from_numpy(scan.xyz)
        boxes = torch.from_numpy(sun.boxes[:, :7])
        inside = points_in_boxes(xyz, boxes, margin=0.02)
        for inst in np.unique(scan.instances[scan.instances >= 0]):
            sel = torch.from_numpy(scan.instances == inst)
            centroid = xyz[sel].mean(0, keepdim=True)
            home = points_in_boxes(centroid, boxes).squeeze(0)  # the box around the instance's centroid
            if not home.any() or sel.sum() < 20:
                continue
            k = int(home.float().argmax())
            if abs(math.remainder(float(boxes[k, 6]), math.pi / 2)) < 0.05:
                continue  # nearly axis-aligned: says nothing about the heading's sign
            frac = inside[sel, k].float().mean().item()
            checked += 1
            assert frac > 0.97, f"{name}: instance {inst} only {frac:.2f} inside box {k}"
    assert checked >= 2
