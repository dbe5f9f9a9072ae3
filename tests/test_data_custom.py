"""Follows docs/custom_data.md: a user's own RGB-D scan and labelled rooms, read through make_dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from t4p.cli import main
from t4p.config import Config
from t4p.data.batch import PretrainBatch, SegBatch
from t4p.data.datasets import make_dataset

DOC = Path(__file__).resolve().parents[1] / "docs" / "custom_data.md"


def _write_scan(scan: Path) -> None:
    """Two views of a wall 2.01 m in front of the camera, as the doc's section 1 describes."""
    for sub in ("color", "depth", "pose", "intrinsic"):
        (scan / sub).mkdir(parents=True)
    K = np.array([[60.0, 0, 39.5, 0], [0, 60, 29.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.savetxt(scan / "intrinsic" / "intrinsic_color.txt", K)
    np.savetxt(scan / "intrinsic" / "intrinsic_depth.txt", K)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(scan / "color" / f"{i}.jpg")
        Image.fromarray(np.full((60, 80), 2010, np.uint16)).save(scan / "depth" / f"{i}.png")
        pose = np.eye(4)
        pose[0, 3] = 0.1 * i  # camera-to-world: the camera slides 10 cm to the right
        np.savetxt(scan / "pose" / f"{i}.txt", pose)


def test_custom_rgbd_scan_as_documented(tmp_path, capsys):
    assert "scannetv2_train.txt" in DOC.read_text()
    root = tmp_path / "my_scans"
    _write_scan(root / "scans" / "kitchen_00")
    (root / "scannetv2_train.txt").write_text("kitchen_00\n")
    assert main(["data", "inspect", str(root / "scans" / "kitchen_00"), "--format", "scannet-rgbd",
                 "--frame-skip", "1"]) == 0  # fmt: skip
    info = json.loads(capsys.readouterr().out)
    assert info["selected_frames"] == 2 and abs(info["bounds"]["max"][2] - 2.01) < 1e-3
    cfg = Config()
    cfg.train.task, cfg.train.out_dir = "pretrain", str(tmp_path / "runs")
    cfg.data.dataset, cfg.data.root, cfg.data.frame_skip = "scannet-rgbd", str(root), 1
    cfg.data.image_height, cfg.data.image_width, cfg.data.voxel_size = 60, 80, 0.05
    _write_scan(root / "scans" / "office_00")  # not in scannetv2_train.txt
    ds = make_dataset(cfg, "train")
    assert [f.parent.name for f in ds.files] == ["kitchen_00", "kitchen_00"]
    b = ds.collate([ds[0], ds[1]])
    assert isinstance(b, PretrainBatch) and len(b.pair_voxel) > 100
    (root / "scannetv2_train.txt").unlink()  # without split files every scan is used
    assert len(make_dataset(cfg, "train")) == 4


def test_custom_labelled_rooms_as_documented(tmp_path, capsys):
    assert "Annotations/table_1.txt" in DOC.read_text()
    rng = np.random.default_rng(1)
    root = tmp_path / "my_rooms"
    for area, room in ((1, "office_a"), (2, "office_c"), (5, "lab_b")):
        ann = root / f"Area_{area}" / room / "Annotations"
        ann.mkdir(parents=True)
        for name, z in (("table_1", 0.7), ("table_2", 0.75), ("wall_1", 1.5), ("stairs_1", 0.2)):
            xyz = rng.uniform(0, 3, (200, 3))
            xyz[:, 2] = z
            rgb = rng.integers(0, 256, (200, 3))
            np.savetxt(ann / f"{name}.txt", np.concatenate([xyz, rgb], 1), fmt="%.4f %.4f %.4f %d %d %d")
    assert main(["data", "inspect", str(root), "--format", "s3dis-raw"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["classes"] == {"table": 1200, "wall": 600, "clutter": 600} and info["num_instances"] == 12
    cfg = Config()
    cfg.train.task, cfg.train.out_dir = "semseg", str(tmp_path / "runs")
    cfg.data.dataset, cfg.data.root, cfg.data.voxel_size = "s3dis-raw", str(root), 0.05
    test = make_dataset(cfg, "test")
    assert [f.parent.name for f in test.files] == ["Area_5"]
    b = test.collate([test[0]])
    assert isinstance(b, SegBatch) and len(b.point_labels) == 800
    assert len(make_dataset(cfg, "train")) == 2  # default data.val_fraction=0: every training room trains
    cfg.data.val_fraction = 0.5
    assert len(make_dataset(cfg, "train")) == len(make_dataset(cfg, "val")) == 1


def test_rooms_added_after_preparing_are_prepared_on_next_use(tmp_path):
    root = tmp_path / "rooms"

    def room(area, name):
        ann = root / f"Area_{area}" / name / "Annotations"
        ann.mkdir(parents=True)
        np.savetxt(ann / "floor_1.txt", np.array([[0, 0, 0, 1, 2, 3], [1, 1, 0, 4, 5, 6.0]]), fmt="%g")

    room(1, "a")
    room(5, "b")
    cfg = Config()
    cfg.train.task, cfg.train.out_dir = "semseg", str(tmp_path / "runs")
    cfg.data.dataset, cfg.data.root = "s3dis-raw", str(root)
    assert len(make_dataset(cfg, "train")) == 1
    room(2, "c")
    assert len(make_dataset(cfg, "train")) == 2
