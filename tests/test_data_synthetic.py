"""Synthetic rooms: deterministic, written in the real layouts, read by the real readers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t4p.config import Config
from t4p.data import s3dis, scannet_votenet, sunrgbd
from t4p.data.batch import DetBatch, PretrainBatch, SegBatch
from t4p.data.classes import S3DIS13
from t4p.data.datasets import make_dataset
from t4p.data.pairs import backproject, build_pairs, project
from t4p.data.scannet_rgbd import SkipStats, read_exported_scene
from t4p.data.synthetic import SynthSettings, ensure_synthetic, generate

TINY = dict(frames_per_scene=3, height=48, width=64, point_density=60.0)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "root", SynthSettings(scenes=2, seed=3, **TINY))


def test_generation_is_deterministic_per_seed(synth, tmp_path):
    again = generate(tmp_path / "again", SynthSettings(scenes=1, seed=3, **TINY))
    other = generate(tmp_path / "other", SynthSettings(scenes=1, seed=4, **TINY))
    f = "s3dis/Area_1/office_1/office_1.txt"
    assert (synth / f).read_bytes() == (again / f).read_bytes() != (other / f).read_bytes()
    d = "scannet/scans/scene0000_00/depth/2.png"
    assert (synth / d).read_bytes() == (again / d).read_bytes()


def test_every_layout_is_read_by_the_real_readers(synth):
    stats = SkipStats()
    frames = list(
        read_exported_scene(synth / "scannet" / "scans" / "scene0000_00", frame_skip=1, stats=stats)
    )
    assert len(frames) == 3 and stats.counts == {}
    assert frames[0].color.shape == (48, 64, 3) and 0.3 < frames[0].depth[frames[0].depth > 0].mean() < 8
    rooms = s3dis.list_rooms(synth / "s3dis")
    assert [a for a, _ in rooms] == [1, 5]  # the second room lands in the test area
    room = s3dis.read_room(rooms[0][1])
    present = {S3DIS13.names[c] for c in np.unique(room.labels)}
    assert {"ceiling", "floor", "wall", "door", "window"} <= present and len(present) >= 8
    vn = scannet_votenet.read_scene(synth / "scannet_votenet", "scene0000_00")
    assert len(vn.xyz) == len(room.xyz) and len(vn.boxes) >= 3
    sun = sunrgbd.read_scene(synth / "sunrgbd", "000001")
    assert len(sun.boxes) >= 2 and (sun.boxes[:, 3:6] > 0).all()
    # each SUN-like box contains points (oriented box test in its own frame)
    for b in sun.boxes:
        c, s = np.cos(b[6]), np.sin(b[6])
        local = (sun.xyz - b[:3]) @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        assert (np.abs(local) <= b[3:6] / 2 + 0.01).all(axis=1).sum() > 5


def test_rendered_depth_agrees_with_geometry_across_frames(synth):
    frames = list(read_exported_scene(synth / "scannet" / "scans" / "scene0001_00", frame_skip=1))
    p = build_pairs(frames[0], (48, 64), voxel_size=0.05, depth_tol=0.03)
    assert p.num_pairs > 0.3 * len(p.coords)
    xyz, _ = backproject(frames[0].depth, frames[0].K_depth, frames[0].pose)
    u, v, z = project(xyz, frames[1].K_depth, frames[1].pose)
    ok = (z > 0) & (u >= 0) & (u < 64) & (v >= 0) & (v < 48)
    d = frames[1].depth[v[ok].astype(int), u[ok].astype(int)]
    assert ok.mean() > 0.2 and np.mean(np.abs(d[d > 0] - z[ok][d > 0]) < 0.05) > 0.6


def _cfg(tmp_path, task, **data) -> Config:
    cfg = Config()
    cfg.train.task = task
    cfg.train.out_dir = str(tmp_path)
    d = cfg.data
    d.synth_scenes, d.synth_frames_per_scene, d.image_height, d.image_width = 6, 2, 48, 64
    d.synth_point_density, d.voxel_size = 40.0, 0.08
    for k, v in data.items():
        setattr(d, k, v)
    return cfg


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


def test_make_dataset_pretrain(out_dir):
    cfg = _cfg(out_dir, "pretrain")
    ds = make_dataset(cfg, "train")
    assert len(ds) == 5 * 2  # train scenes only (the Area 5 room is ScanNet "val")
    b = ds.collate([ds[0], ds[1]])
    assert (
        isinstance(b, PretrainBatch) and b.images.shape == (2, 3, 48, 64) and b.depth.shape == (2, 1, 48, 64)
    )
    assert b.coords.dtype == torch.int32 and (b.coords[:, 1:] >= 0).all()
    assert b.coords[:, 0].unique().tolist() == [0, 1]
    assert (b.pair_pixel < 48 * 64).all() and (b.pair_voxel < len(b.coords)).all()
    assert (b.coords[b.pair_voxel, 0].long() == b.pair_frame).all()  # pairs refer to their frame's voxels
    assert (b.depth.view(2, -1)[b.pair_frame, b.pair_pixel] > 0).all()
    assert b.feats.min() >= -0.5 and b.feats.max() <= 0.5
    assert b.to("cpu").pair_voxel.equal(b.pair_voxel)
    assert len(ensure_synthetic(cfg).name) == 12  # one cache root keyed by the settings


def test_make_dataset_segmentation_splits_by_area(out_dir):
    cfg = _cfg(out_dir, "semseg", val_fraction=0.2)
    sizes = {s: len(make_dataset(cfg, s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 4, "val": 1, "test": 1}
    ds = make_dataset(cfg, "test")
    assert ds.files[0].parent.name == "Area_5"
    b = ds.collate([ds[0]])
    assert isinstance(b, SegBatch) and len(b.point_labels) == len(b.point2voxel) == len(b.point_xyz)
    assert int(b.point2voxel.max()) < len(b.coords)
    # voxel label = mode of its points' labels: check one voxel by hand
    row = int(torch.mode(b.point2voxel).values)
    labels = b.point_labels[b.point2voxel == row]
    assert int(b.labels[row]) == int(torch.mode(labels).values)
    assert b.point_instances.min() >= 0 and b.labels.max() < 13


def test_make_dataset_detection(out_dir):
    cfg = _cfg(out_dir, "det", classes="sunrgbd10", num_points=2000)
    ds = make_dataset(cfg, "train")
    b = ds.collate([ds[0], ds[1]])
    assert isinstance(b, DetBatch) and len(b.point_xyz) == 4000 and len(b.boxes) == 2
    assert all(x.shape[1] == 8 for x in b.boxes)
    cfg = _cfg(out_dir, "det", classes="scannet18")
    b = make_dataset(cfg, "test").collate([make_dataset(cfg, "test")[0]])
    assert b.boxes[0].shape[0] >= 3 and (b.boxes[0][:, 7] < 18).all()


def test_voxel_mean_color_matches_a_loop():
    from t4p.data.datasets import voxel_mean_color

    rng = np.random.default_rng(0)
    p2v = rng.integers(0, 7, 300)
    rgb = rng.integers(0, 256, (300, 3)).astype(np.uint8)
    got = voxel_mean_color(rgb, p2v, 7)
    for m in range(7):
        assert got[m].tolist() == np.rint(rgb[p2v == m].astype(float).mean(0)).astype(int).tolist()


def _ref_hit(s, o, d):
    """Scalar reference: entry distance of ray o + t d into one solid (inf if none)."""
    import math

    c, sn = math.cos(-s.yaw), math.sin(-s.yaw)
    ox, oy, oz = o - s.centre
    lo = (c * ox - sn * oy, sn * ox + c * oy, oz)
    ld = (c * d[0] - sn * d[1], sn * d[0] + c * d[1], d[2])
    if s.kind == "cyl":
        r, hz, best = s.half[0], s.half[2], math.inf
        a = ld[0] ** 2 + ld[1] ** 2
        b = 2 * (lo[0] * ld[0] + lo[1] * ld[1])
        cc = lo[0] ** 2 + lo[1] ** 2 - r * r
        disc = b * b - 4 * a * cc
        if a > 0 and disc >= 0:
            t = (-b - math.sqrt(disc)) / (2 * a)
            if t > 1e-6 and abs(lo[2] + t * ld[2]) <= hz:
                best = t
        if ld[2] != 0:
            t = (hz - lo[2]) / ld[2]
            if t > 1e-6 and (lo[0] + t * ld[0]) ** 2 + (lo[1] + t * ld[1]) ** 2 <= r * r:
                best = min(best, t)
        return best
    tmin, tmax = -math.inf, math.inf
    for k in range(3):
        if ld[k] == 0:
            if abs(lo[k]) > s.half[k]:
                return math.inf
            continue
        t1, t2 = (-s.half[k] - lo[k]) / ld[k], (s.half[k] - lo[k]) / ld[k]
        tmin, tmax = max(tmin, min(t1, t2)), min(tmax, max(t1, t2))
    return tmin if tmax >= tmin and tmin > 1e-6 else (tmax if tmin <= 1e-6 < tmax else math.inf)


def test_ray_cast_matches_a_per_ray_loop():
    from t4p.data.synthetic import intrinsics, make_room, ray_cast, trajectory

    rng = np.random.default_rng(5)
    room = make_room(rng)
    K = intrinsics(48, 64)
    pose = trajectory(room, 3, rng, cam_r=0.3)[1]
    t, which, dirs = ray_cast(room, pose, K, (48, 64))
    pick = np.random.default_rng(0).integers(0, 48 * 64, 300)
    for p in pick:
        v, u = divmod(int(p), 64)
        hits = [_ref_hit(s, pose[:3, 3], dirs[v, u].astype(np.float64)) for s in room.solids]
        assert t[v, u] == pytest.approx(min(hits), rel=1e-4)
        assert hits[which[v, u]] == pytest.approx(min(hits), rel=1e-4)
