"""Prepared caches: manifest, resume, parallel workers, no half-written files, and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from t4p.cli import main
from t4p.data.prepare import BadDataError, PrepareSettings, is_complete, prepare, read_manifest
from tests._data_helpers import layout_exported, layout_s3dis_room

REPO = Path(__file__).resolve().parents[1]
SMALL = PrepareSettings(frame_skip=1, image_height=60, image_width=80, voxel_size=0.05)


def _all_npz_load(out: Path) -> int:
    n = 0
    for p in out.rglob("*.npz"):
        if p.name.startswith(".tmp-"):
            continue
        with np.load(p) as z:
            for k in z.files:
                z[k]  # noqa: B018 - decompresses every array: fails on a truncated file
        n += 1
    return n


@pytest.fixture(scope="module")
def rgbd_scenes(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("rgbd") / "scans"
    for k in range(3):
        layout_exported(
            shared_data, root / f"scene000{k}_00", frames=tuple(range(300 * k, 300 * k + 300, 100))
        )
    return root.parent


def test_prepare_writes_manifest_and_resumes(rgbd_scenes, tmp_path):
    out = tmp_path / "cache"
    m = prepare("scannet-rgbd", rgbd_scenes, out, SMALL, workers=2, progress=False)
    assert is_complete(out) and list(m["units"]) == [f"scans/scene000{k}_00" for k in range(3)]
    assert m["totals"]["selected_frames"] == 9 and m["totals"]["pairs"] > 0
    assert _all_npz_load(out) == 9
    f = out / m["units"]["scans/scene0001_00"]["files"][0]
    before = f.stat().st_mtime_ns
    m2 = prepare("scannet-rgbd", rgbd_scenes, out, SMALL, workers=1, progress=False)
    assert f.stat().st_mtime_ns == before and m2["units"] == m["units"]  # nothing redone


def test_bad_unit_is_not_cached_and_rerun_finishes(shared_data, tmp_path):
    src = tmp_path / "scans"
    layout_exported(shared_data, src / "scene0000_00", frames=(0, 50))
    layout_exported(shared_data, src / "scene0001_00", frames=(0, 50))
    (src / "scene0001_00" / "pose" / "50.txt").write_text("garbage\n")
    out = tmp_path / "cache"
    with pytest.raises(BadDataError, match=r"scene0001_00/pose/50\.txt"):
        prepare("scannet-rgbd", src, out, SMALL, progress=False)
    m = read_manifest(out)
    assert list(m["units"]) == ["scene0000_00"] and list(m["bad_units"]) == ["scene0001_00"] and not m["complete"]
    assert not list(out.rglob(".tmp-*")) and not list(out.glob("scene0001_00/*.npz"))  # frame 0: removed
    done = out / "scene0000_00" / "000000.npz"
    before = done.stat().st_mtime_ns
    shutil.copyfile(
        shared_data / "7scenes_rgbd" / "frame-000050.pose.txt", src / "scene0001_00" / "pose" / "50.txt"
    )
    m = prepare("scannet-rgbd", src, out, SMALL, progress=False)
    assert m["complete"] and len(m["units"]) == 2 and not m["bad_units"] and done.stat().st_mtime_ns == before


def test_killed_prepare_leaves_no_half_written_file(rgbd_scenes, tmp_path):
    out = tmp_path / "cache"
    code = (
        "import sys; from t4p.data.prepare import prepare, PrepareSettings; "
        "prepare('scannet-rgbd', sys.argv[1], sys.argv[2], PrepareSettings(frame_skip=1), progress=False)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(rgbd_scenes), str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.rglob("*.npz")):
        time.sleep(0.02)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    m = read_manifest(out)  # parses (written atomically) or is absent
    assert not m.get("complete", False)
    for unit in m.get("units", {}).values():
        assert all((out / f).exists() for f in unit["files"])
    _all_npz_load(out)  # every file with a final name is complete
    m = prepare("scannet-rgbd", rgbd_scenes, out, PrepareSettings(frame_skip=1), progress=False)
    assert m["complete"] and not list(out.rglob(".tmp-*")) and _all_npz_load(out) == 9


def test_cli_prepare_and_inspect(shared_data, tmp_path, capsys, rgbd_scenes):
    layout_s3dis_room(shared_data, tmp_path / "s3dis")
    assert main(["data", "inspect", str(tmp_path / "s3dis"), "--format", "s3dis-raw"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_points"] == 100 and info["num_instances"] == 19 and info["num_boxes"] == 0
    assert info["classes"]["ceiling"] == 19 and sum(info["classes"].values()) == 100
    np.testing.assert_allclose(info["bounds"]["min"], [0.043, 0.012, 0.051], atol=2e-3)

    assert (
        main(
            [
                "data",
                "inspect",
                str(rgbd_scenes / "scans" / "scene0000_00"),
                "--format",
                "scannet-rgbd",
                "--frame-skip",
                "100",
            ]
        )
        == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert (info["num_frames"], info["selected_frames"], info["skipped"]) == (3, 3, {})
    assert -3 < info["bounds"]["min"][0] < info["bounds"]["max"][0] < 4

    assert main(["data", "inspect", str(shared_data / "sunrgbd"), "--format", "sunrgbd"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_boxes"] == 3 and info["classes"] == {"bed": 1, "dresser": 1, "night_stand": 1}
    assert info["num_points"] == 50000

    out = tmp_path / "prep"
    assert main(["data", "prepare", "s3dis-raw", str(tmp_path / "s3dis"), str(out), "--workers", "1"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["units"] == 1 and res["points"] == 100
    assert main(["data", "inspect", str(tmp_path / "nothing"), "--format", "s3dis-raw"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["data", "inspect", str(tmp_path / "empty"), "--format", "s3dis-raw"]) == 2
    assert "no rooms found" in capsys.readouterr().err


@pytest.mark.ray
@pytest.mark.slow
def test_prepare_as_ray_tasks(shared_data, tmp_path):
    ray = pytest.importorskip("ray")
    from t4p.sweep.prepare_ray import run_ray_tasks

    for area in (1, 2):
        layout_s3dis_room(shared_data, tmp_path / "s3dis", area=area)
    try:
        ray.init(num_cpus=1, include_dashboard=False)
        m = prepare("s3dis-raw", tmp_path / "s3dis", tmp_path / "out", executor=run_ray_tasks, progress=False)
    finally:
        ray.shutdown()
    assert m["complete"] and list(m["units"]) == ["Area_1/office_2", "Area_2/office_2"]
    assert m["totals"]["points"] == 200 and _all_npz_load(tmp_path / "out") == 2
