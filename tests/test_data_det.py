"""Detection readers: SUN RGB-D scene 000001 read as is; VoteNet ScanNet export built by the test."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from t4p.data import scannet_votenet, sunrgbd
from t4p.data.augment import AugmentSpec, augment_points
from t4p.data.classes import SCANNET18, SUNRGBD10


def test_sunrgbd_scene_boxes_match_mmdet3d_infos(shared_data):
    root = shared_data / "sunrgbd"
    sc = sunrgbd.read_scene(root, "000001", label_version="v2")
    info = pickle.loads((root / "sunrgbd_infos_train.pkl").read_bytes())[0]["annos"]
    assert [SUNRGBD10.names[int(c)] for c in sc.boxes[:, 7]] == list(info["name"])
    ref = info["gt_boxes_upright_depth"]  # heading in VoteNet's sign: t4p's is its negative
    np.testing.assert_allclose(sc.boxes[:, :6], ref[:, :6], atol=1e-5)
    np.testing.assert_allclose(sc.boxes[:, 6], -ref[:, 6], atol=1e-5)
    assert len(sc.xyz) == 50000 and sc.rgb.dtype == np.uint8
    v1 = sunrgbd.read_scene(root, "000001")  # default v1 labels: same classes, other night_stand box
    assert [SUNRGBD10.names[int(c)] for c in v1.boxes[:, 7]] == ["bed", "night_stand", "dresser"]
    assert not np.allclose(v1.boxes[1, :3], sc.boxes[1, :3])


def test_sunrgbd_points_project_onto_their_pixels(shared_data):
    t = shared_data / "sunrgbd" / "sunrgbd_trainval"
    rtilt, K = sunrgbd.read_calib(t / "calib" / "000001.txt")
    sc = sunrgbd.read_scene(shared_data / "sunrgbd", "000001")
    p = sc.xyz[:2000].astype(np.float64) @ rtilt  # Rtilt^T p, row form
    x, y, z = p[:, 0], -p[:, 2], p[:, 1]
    u = np.rint(K[0, 0] * x / z + K[0, 2]).astype(int) - 1
    v = np.rint(K[1, 1] * y / z + K[1, 2]).astype(int) - 1
    img = np.array(Image.open(t / "image" / "000001.jpg"))
    assert np.abs(img[v, u].astype(int) - sc.rgb[:2000]).max() <= 1


def test_sunrgbd_label_with_wrong_field_count_names_file_and_line(tmp_path, shared_data):
    t = tmp_path / "sunrgbd_trainval"
    (t / "label_v1").mkdir(parents=True)
    (t / "lidar").mkdir()
    (t / "lidar" / "000001.npz").write_bytes(
        (shared_data / "sunrgbd/sunrgbd_trainval/lidar/000001.npz").read_bytes()
    )
    (t / "label_v1" / "000001.txt").write_text("bed 1 2 3 4 0 0 0 1 1 1 1\n")
    with pytest.raises(sunrgbd.SUNRGBDFormatError, match=r"000001\.txt:1: expected 13 fields"):
        sunrgbd.read_scene(tmp_path, "000001")


def test_votenet_prepared_sunrgbd_boxes_are_converted(tmp_path):
    np.savez(tmp_path / "000003_pc.npz", pc=np.zeros((5, 6), np.float32))
    np.save(tmp_path / "000003_bbox.npy", np.array([[1, 2, 0.5, 0.4, 0.3, 0.2, 0.7, 3]], np.float32))
    b = sunrgbd.read_scene(tmp_path, "000003").boxes
    np.testing.assert_allclose(b, [[1, 2, 0.5, 0.8, 0.6, 0.4, -0.7, 3]], rtol=1e-6)


def test_votenet_prepared_sunrgbd_box_file_with_wrong_columns(tmp_path):
    np.savez(tmp_path / "000007_pc.npz", pc=np.zeros((5, 6), np.float32))
    np.save(tmp_path / "000007_bbox.npy", np.zeros((2, 7), np.float32))
    with pytest.raises(sunrgbd.SUNRGBDFormatError, match=r"000007_bbox\.npy: expected \(K, 8\)"):
        sunrgbd.read_scene(tmp_path, "000007")


def _votenet_scene(root, scene="scene0000_00", bbox_cols=7):
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 3, (200, 3))
    rgb = rng.integers(0, 256, (200, 3))
    np.save(root / f"{scene}_vert.npy", np.concatenate([xyz, rgb], 1).astype(np.float32))
    sem = np.array([5] * 50 + [7] * 50 + [1] * 50 + [40] * 50)  # chair, table, wall, otherprop
    np.save(root / f"{scene}_sem_label.npy", sem)
    np.save(root / f"{scene}_ins_label.npy", np.repeat([1, 2, 3, 0], 50))
    boxes = np.array([[1, 1, 1, 0.5, 0.5, 1, 5], [2, 2, 0.4, 1, 2, 0.8, 7], [0, 1.5, 1.5, 0.1, 3, 3, 1]])
    np.save(root / f"{scene}_bbox.npy", boxes[:, :bbox_cols].astype(np.float32))


def test_votenet_scannet_maps_nyu40_to_18_classes(tmp_path):
    _votenet_scene(tmp_path)
    sc = scannet_votenet.read_scene(tmp_path, "scene0000_00")
    chair, table = SCANNET18.index("chair"), SCANNET18.index("table")
    assert sc.boxes[:, 7].tolist() == [chair, table]  # the wall box is not a benchmark class
    np.testing.assert_allclose(sc.boxes[1, :6], [2, 2, 0.4, 1, 2, 0.8])
    assert set(sc.labels[:100].tolist()) == {chair, table} and (sc.labels[100:] == -100).all()
    assert (sc.instances[150:] == -1).all()


def test_votenet_box_file_with_wrong_column_count_is_an_error(tmp_path):
    _votenet_scene(tmp_path, bbox_cols=6)
    with pytest.raises(scannet_votenet.VoteNetFormatError, match=r"scene0000_00_bbox\.npy: expected boxes"):
        scannet_votenet.read_scene(tmp_path, "scene0000_00")


def test_augmentation_moves_boxes_with_points():
    rng = np.random.default_rng(3)
    box = np.array([[1.0, 2.0, 0.5, 2.0, 1.0, 1.0, 0.3, 4]], np.float32)
    c, s = np.cos(0.3), np.sin(0.3)
    local = rng.uniform(-0.5, 0.5, (500, 3)) * [2.0, 1.0, 1.0]
    xyz = local @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + box[0, :3]
    for seed in range(5):
        out, _, b = augment_points(
            xyz, np.zeros((500, 3), np.uint8), AugmentSpec(), np.random.default_rng(seed), box
        )
        cb, sb = np.cos(b[0, 6]), np.sin(b[0, 6])
        back = (out - b[0, :3]) @ np.array([[cb, -sb, 0], [sb, cb, 0], [0, 0, 1]])  # into the box frame
        assert (np.abs(back) <= b[0, 3:6] / 2 + 1e-4).all()
        assert b[0, 7] == 4
