"""ScanNet RGB-D readers and the pair builder on real 7-Scenes frames (laid out by the tests)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from t4p.data.pairs import backproject, build_pairs, project, resize_frame, scale_intrinsics
from t4p.data.scannet_rgbd import RGBDFormatError, SkipStats, read_exported_scene
from t4p.data.scannet_sens import SensFormatError, iter_sens, read_header
from tests._data_helpers import SEVEN_SCENES_FRAMES, layout_exported, seven_scenes_frame, write_sens_struct


@pytest.fixture(scope="module")
def scene(shared_data, tmp_path_factory):
    return layout_exported(shared_data, tmp_path_factory.mktemp("scannet") / "scene7s_00")


def test_exported_reader_selects_every_kth_frame_and_reads_real_values(scene, shared_data):
    stats = SkipStats()
    frames = list(read_exported_scene(scene, frame_skip=100, stats=stats))
    assert [f.index for f in frames] == list(range(0, 1000, 100))
    assert stats.num_frames == 20 and stats.selected == 10 and stats.counts == {}
    f = frames[0]
    assert f.color.shape == (480, 640, 3) and f.color.dtype == np.uint8
    raw = np.array(Image.open(seven_scenes_frame(shared_data, 0)[1]))
    np.testing.assert_allclose(f.depth[raw > 0], raw[raw > 0] / 1000.0, rtol=1e-6)
    assert (f.depth[raw == 0] == 0).all()
    np.testing.assert_allclose(f.pose, np.loadtxt(seven_scenes_frame(shared_data, 0)[2]))
    np.testing.assert_allclose(f.K_color, [[585, 0, 320], [0, 585, 240], [0, 0, 1]])


def test_65535_depth_is_invalid(scene):
    (f,) = [f for f in read_exported_scene(scene, frame_skip=1) if f.index == 850]
    raw = np.array(Image.open(scene / "depth" / "850.png"))
    assert (raw == 65535).sum() == 2225  # PROVENANCE.md
    assert (f.depth[raw == 65535] == 0).all() and f.depth.max() < 4.0


def test_sens_reader_matches_exported_reader(scene, shared_data, tmp_path):
    sens = tmp_path / "scene7s_00.sens"
    write_sens_struct(sens, shared_data, frames=(0, 50, 100, 150, 200, 250))
    h = read_header(sens)
    assert (h.num_frames, h.color_size, h.depth_size, h.depth_shift) == (6, (640, 480), (640, 480), 1000.0)
    a = list(iter_sens(sens, frame_skip=5))
    b = [f for f in read_exported_scene(scene, frame_skip=250) if f.index < 300]
    assert [f.index for f in a] == [0, 5]  # .sens frames are numbered in the stream
    for fa, fb in zip(a, b, strict=True):
        np.testing.assert_array_equal(fa.depth, fb.depth)
        np.testing.assert_array_equal(fa.color, fb.color)
        np.testing.assert_allclose(fa.pose, fb.pose, atol=1e-6)  # stored as float32


def test_sens_never_decodes_unselected_frames(shared_data, tmp_path):
    sens = tmp_path / "s.sens"
    garbage = {k: b"not a jpeg" * 7 for k in range(6) if k % 4}
    write_sens_struct(sens, shared_data, frames=(0, 50, 100, 150, 200, 250), color_override=garbage)
    assert [f.index for f in iter_sens(sens, frame_skip=4)] == [0, 4]


def test_truncated_sens_names_file_and_frame(shared_data, tmp_path):
    sens = tmp_path / "cut.sens"
    offsets = write_sens_struct(sens, shared_data, frames=(0, 50, 100))
    data = sens.read_bytes()
    sens.write_bytes(data[: offsets[2] + 100])  # frame 2's data is cut off
    stats = SkipStats()
    it = iter_sens(sens, frame_skip=1, stats=stats)
    assert [f.index for f in (next(it), next(it))] == [0, 1]
    with pytest.raises(SensFormatError, match=r"cut\.sens: truncated in frame 2 of 3"):
        next(it)
    sens.write_bytes(data[:30])
    with pytest.raises(SensFormatError, match="truncated at byte"):
        list(iter_sens(sens))


def test_bad_frames_are_skipped_and_counted(scene, tmp_path, shared_data, caplog):
    bad = layout_exported(shared_data, tmp_path / "bad_00", frames=(0, 50, 100, 150, 200))
    (bad / "depth" / "50.png").unlink()  # missing depth file
    pose = np.loadtxt(bad / "pose" / "100.txt")
    pose[:3, :] = -np.inf  # ScanNet's invalid poses
    np.savetxt(bad / "pose" / "100.txt", pose)
    Image.fromarray(np.zeros((480, 640), np.uint16)).save(bad / "depth" / "150.png")  # all-zero depth
    stats = SkipStats()
    with caplog.at_level(logging.WARNING):
        frames = list(read_exported_scene(bad, frame_skip=50, stats=stats))
    assert [f.index for f in frames] == [0, 200]
    assert stats.counts == {"missing_file": 1, "nonfinite_pose": 1, "empty_depth": 1}
    assert "50.png" in stats.examples["missing_file"][0]
    assert "bad_00/100" in caplog.text and "nonfinite pose" in caplog.text


def test_sens_skips_inf_pose_and_empty_depth(shared_data, tmp_path):
    poses = [np.loadtxt(seven_scenes_frame(shared_data, i)[2]) for i in (0, 50, 100)]
    poses[1] = np.full((4, 4), -np.inf)
    sens = tmp_path / "p.sens"
    write_sens_struct(sens, shared_data, frames=(0, 50, 100), poses=poses)
    stats = SkipStats()
    assert [f.index for f in iter_sens(sens, frame_skip=1, stats=stats)] == [0, 2]
    assert stats.to_dict() == {"num_frames": 3, "selected_frames": 2, "skipped": {"nonfinite_pose": 1}}


def test_malformed_pose_file_is_an_error_naming_it(tmp_path, shared_data):
    bad = layout_exported(shared_data, tmp_path / "p_00", frames=(0,))
    (bad / "pose" / "0.txt").write_text("1 0 0\n0 1 0\n")
    with pytest.raises(RGBDFormatError, match=r"pose/0\.txt: expected a 4x4 matrix"):
        list(read_exported_scene(bad, frame_skip=1))


def test_intrinsics_scale_to_240x320():
    K = np.array([[585.0, 0, 320], [0, 585, 240], [0, 0, 1]])
    np.testing.assert_allclose(
        scale_intrinsics(K, (480, 640), (240, 320)), [[292.5, 0, 159.75], [0, 292.5, 119.75], [0, 0, 1]]
    )


def naive_pairs(coords, voxel_size, depth, K, pose, tol):
    """Reference: loop over voxels, project each centre by hand (Eq. 2), check the depth."""
    w2c = np.linalg.inv(pose)
    h, w = depth.shape
    out = set()
    for m, c in enumerate(coords.tolist()):
        x, y, z = ((c[0] + 0.5) * voxel_size, (c[1] + 0.5) * voxel_size, (c[2] + 0.5) * voxel_size)
        cx_, cy_, cz_ = (w2c[r, 0] * x + w2c[r, 1] * y + w2c[r, 2] * z + w2c[r, 3] for r in range(3))
        if cz_ <= 0:
            continue
        u, v = round(K[0, 0] * cx_ / cz_ + K[0, 2]), round(K[1, 1] * cy_ / cz_ + K[1, 2])
        if 0 <= u < w and 0 <= v < h and depth[v, u] > 0 and abs(depth[v, u] - cz_) <= tol:
            out.add((m, v * w + u))
    return out


@pytest.mark.parametrize("index", [0, 850])
def test_correspondences_match_naive_loop(scene, index):
    (frame,) = [f for f in read_exported_scene(scene, frame_skip=1) if f.index == index]
    p = build_pairs(frame, (240, 320), voxel_size=0.025, depth_tol=0.02)
    assert p.color.shape == (240, 320, 3) and p.depth.shape == (240, 320)
    ref = naive_pairs(p.coords, 0.025, p.depth, p.K, p.pose, 0.02)
    assert len(ref) > 1000
    assert set(zip(p.pair_voxel.tolist(), p.pair_pixel.tolist(), strict=True)) == ref
    # each voxel is the floor of a back-projected pixel: check one pixel by hand
    v, u = (int(x[len(x) // 2]) for x in np.nonzero(p.depth > 0))
    z = float(p.depth[v, u])
    cam = np.array([(u - p.K[0, 2]) * z / p.K[0, 0], (v - p.K[1, 2]) * z / p.K[1, 1], z])
    world = p.pose[:3, :3] @ cam + p.pose[:3, 3]
    assert (np.floor(world / 0.025).astype(int) == p.coords).all(axis=1).any()


@pytest.mark.parametrize(("a", "b"), [(600, 700)])
def test_frames_of_one_scene_overlap_where_poses_say(scene, a, b):
    frames = {f.index: f for f in read_exported_scene(scene, frame_skip=50) if f.index in (a, b)}
    ca, da, Ka = resize_frame(frames[a], (240, 320))
    _, db, Kb = resize_frame(frames[b], (240, 320))
    xyz, _ = backproject(da, Ka, frames[a].pose)

    def agreement(pose_b):
        u, v, z = project(xyz, Kb, pose_b)
        ok = (z > 0) & (u >= 0) & (u < 320) & (v >= 0) & (v < 240)
        d = db[v[ok].astype(int), u[ok].astype(int)]
        valid = d > 0
        hits = int(np.sum(np.abs(d[valid] - z[ok][valid]) < 0.05))
        return hits / max(int(valid.sum()), 1), int(valid.sum())

    good, n = agreement(frames[b].pose)
    assert n > 10000 and good > 0.75  # PROVENANCE.md: 86-96 % within 5 cm at full resolution
    wrong, _ = agreement(np.linalg.inv(frames[b].pose))  # poses misread as world-to-camera
    assert wrong < good - 0.3


def test_inspect_and_prepare_a_sens_file(shared_data, tmp_path, capsys):
    from t4p.cli import main

    poses = [np.loadtxt(seven_scenes_frame(shared_data, i)[2]) for i in (0, 50, 100)]
    poses[2][0, 0] = np.nan
    sens = tmp_path / "scene9_00.sens"
    write_sens_struct(sens, shared_data, frames=(0, 50, 100), poses=poses)
    assert main(["data", "inspect", str(sens), "--format", "scannet-sens", "--frame-skip", "1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["num_frames"], info["selected_frames"], info["skipped"]) == (3, 2, {"nonfinite_pose": 1})
    out = tmp_path / "cache"
    assert main(["data", "prepare", "scannet-sens", str(tmp_path), str(out), "--frame-skip", "2"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["selected_frames"] == 1 and res["skipped"] == {"nonfinite_pose": 1} and res["pairs"] > 1000
    assert (out / "scene9_00" / "000000.npz").exists()


def test_depth_registration_into_another_camera_matches_the_plane():
    """Depth of a tilted plane seen by a 640x480 depth camera, registered into a 240x320 colour
    camera with other intrinsics, equals the plane's analytic depth in that camera."""
    from t4p.data.pairs import register_depth

    n, dist = np.array([0.2, -0.1, 1.0]), 2.0  # plane n . X = dist (camera frame)
    Kd = np.array([[585.0, 0, 320], [0, 585, 240], [0, 0, 1]])
    Kc = np.array([[320.0, 0, 155], [0, 320, 118], [0, 0, 1]])  # a narrower view, shifted centre

    def plane_depth(K, h, w):
        v, u = np.mgrid[0:h, 0:w]
        rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones((h, w))], -1)
        return dist / (rays @ n)  # z of the ray/plane intersection

    reg = register_depth(plane_depth(Kd, 480, 640).astype(np.float32), Kd, Kc, (240, 320))
    want = plane_depth(Kc, 240, 320)
    valid = reg > 0
    assert valid.mean() > 0.9
    assert np.abs(reg[valid] - want[valid]).max() < 0.01


def test_sens_decoding_memory_does_not_grow_with_the_file(shared_data, tmp_path):
    import tracemalloc

    peaks = {}
    for n in (4, 12):
        sens = tmp_path / f"s{n}.sens"
        offsets = write_sens_struct(sens, shared_data, frames=SEVEN_SCENES_FRAMES[:n])
        frame_bytes = max(b - a for a, b in zip(offsets, offsets[1:]))  # largest raw frame record
        tracemalloc.start()
        kept = list(iter_sens(sens, frame_skip=100))  # frame 0 only; the rest are skipped
        peaks[n] = tracemalloc.get_traced_memory()[1] - sum(f.color.nbytes + f.depth.nbytes for f in kept)
        tracemalloc.stop()
    # 8 more frames in the file (~8 raw frames) add less than one raw frame to the peak
    assert peaks[12] - peaks[4] < frame_bytes


def test_make_dataset_reads_sens_files_with_the_official_split(shared_data, tmp_path):
    from t4p.config import Config
    from t4p.data.datasets import make_dataset

    root = tmp_path / "scannet"
    for k, frames in enumerate(((0, 50), (100, 150))):
        (root / f"scene000{k}_00").mkdir(parents=True)
        write_sens_struct(root / f"scene000{k}_00" / f"scene000{k}_00.sens", shared_data, frames=frames)
    (root / "scannetv2_train.txt").write_text("scene0001_00\n")
    cfg = Config()
    cfg.train.task, cfg.train.out_dir = "pretrain", str(tmp_path / "runs")
    cfg.data.dataset, cfg.data.root, cfg.data.frame_skip = "scannet-sens", str(root), 1
    cfg.data.image_height, cfg.data.image_width, cfg.data.voxel_size = 60, 80, 0.05
    ds = make_dataset(cfg, "train")
    assert [f.parent.name for f in ds.files] == ["scene0001_00", "scene0001_00"]
    assert ds.collate([ds[0]]).images.shape == (1, 3, 60, 80)
