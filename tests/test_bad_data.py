"""Data you can trust: bad source files are errors naming file and line / frame / row, never cached values.

Every case writes a small source in the real file format (7-Scenes frames in ScanNet's layouts, the S3DIS
fixture as a raw Stanford room, VoteNet exports, SUN RGB-D files), with one good unit and one bad one, and runs
``t4p data prepare`` in-process through ``t4p.cli.main``: exit code 2, one ``t4p: error:`` message naming the
bad file and where in it, no traceback, the good unit cached and nothing of the bad one. Two real subprocesses
prove the exit code. Bad settings (``--frame-skip 0``, ``--voxel-size nan``, ``--classes nope``, ...) are refused
the same way, naming the flag, before anything is read. The rest covers a corrupt manifest, SUN RGB-D boxes of
other classes (dropped, counted, warned), ``data.on_bad=skip``, fingerprinted caches (a changed source
re-prepares exactly its unit, ``--force`` rebuilds), stale caches refused by the datasets, and prepare's worker
processes dying with their parent.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t4p.cli import main
from t4p.data.prepare import read_manifest
from t4p.errors import UserError
from tests._data_helpers import layout_exported, layout_s3dis_room, seven_scenes_frame, write_sens_struct

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--frame-skip", "1", "--height", "60", "--width", "80", "--voxel-size", "0.05"]
SENS_FRAME_HEADER = 16 * 4 + 4 * 8  # pose float32[16], then uint64 timestamps and byte counts


# --------------------------------------------------------------------------- writers of small real-format sources


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _sens(shared: Path, src: Path, break_frame: Callable[[bytearray, list[int]], bytes | bytearray] | None = None,
          **kw) -> None:
    """``good.sens`` and ``bad.sens`` (three 7-Scenes frames each); ``break_frame`` edits bad.sens' bytes."""
    src.mkdir(parents=True, exist_ok=True)
    write_sens_struct(src / "good.sens", shared, frames=(0, 50, 100))
    offsets = write_sens_struct(src / "bad.sens", shared, frames=(0, 50, 100), **kw)
    if break_frame is not None:
        data = bytearray((src / "bad.sens").read_bytes())
        (src / "bad.sens").write_bytes(bytes(break_frame(data, offsets)))


def _sizes(data: bytearray, offset: int) -> tuple[int, int]:
    """(colour bytes, depth bytes) of the frame whose header starts at ``offset`` (ScanNet's layout)."""
    return struct.unpack_from("<QQ", data, offset + 16 * 4 + 2 * 8)


def _garble_depth(data: bytearray, offsets: list[int]) -> bytearray:
    csize, _ = _sizes(data, offsets[1])
    start = offsets[1] + SENS_FRAME_HEADER + csize
    data[start : start + 16] = b"\xff" * 16  # not a zlib stream header any more
    return data


def _rgbd(shared: Path, src: Path, edit: Callable[[Path], None]) -> None:
    """Two exported scenes of two 7-Scenes frames each; ``edit`` breaks scene0001_00."""
    layout_exported(shared, src / "scans" / "scene0000_00", frames=(0, 50))
    layout_exported(shared, src / "scans" / "scene0001_00", frames=(0, 50))
    edit(src / "scans" / "scene0001_00")


def _resize(path: Path, wh: tuple[int, int]) -> None:
    with Image.open(path) as im:
        im.load()
    im.resize(wh, Image.Resampling.NEAREST).save(path)


def _shrink_depth(scene: Path) -> None:
    _resize(scene / "depth" / "50.png", (320, 240))


def _halve_depth_keep_its_camera(scene: Path) -> None:
    """Depth PNGs resized to 320x240; intrinsic_depth.txt still describes the 640x480 depth camera."""
    _intrinsic(scene, "intrinsic_depth.txt", KD_640)
    for i in (0, 50):
        _resize(scene / "depth" / f"{i}.png", (320, 240))


def _resize_colour_keep_its_camera(scene: Path) -> None:
    """Colour JPEGs resized to 400x300; intrinsic_color.txt still describes the 640x480 colour camera."""
    _intrinsic(scene, "intrinsic_depth.txt", KD_640)
    for i in (0, 50):
        _resize(scene / "color" / f"{i}.jpg", (400, 300))


def _intrinsic(scene: Path, name: str, K: np.ndarray) -> None:
    K4 = np.eye(4)
    K4[:3, :3] = K
    np.savetxt(scene / "intrinsic" / name, K4)


def _s3dis(shared: Path, src: Path, files: dict[str, list[str]]) -> None:
    """The S3DIS fixture as Area_1/office_2 (good) and Area_1/office_9 with ``files`` (name -> lines)."""
    layout_s3dis_room(shared, src)
    ann = src / "Area_1" / "office_9" / "Annotations"
    ann.mkdir(parents=True)
    for name, lines in files.items():
        (ann / name).write_text("".join(ln + "\n" for ln in lines))


def _chair(bad_line: str) -> dict[str, list[str]]:
    return {"chair_1.txt": ["0 0 0 10 20 30", "0.5 0 0 10 20 30", bad_line, "0 0.5 0.2 10 20 30"],
            "table_1.txt": ["1 1 0.7 40 50 60", "1.5 1 0.7 40 50 60"]}


def _votenet_arrays() -> dict[str, np.ndarray]:
    """One VoteNet-export scene: 20 points (chair and table NYU40 ids, instances 1 and 2) and their two boxes."""
    rng = np.random.default_rng(0)
    return {
        "vert": np.concatenate([rng.uniform(0, 3, (20, 3)), rng.integers(0, 256, (20, 3))], 1).astype(np.float32),
        "sem_label": np.array([5] * 10 + [7] * 10),
        "ins_label": np.repeat([1, 2], 10),
        "bbox": np.array([[1, 1, 1, 0.5, 0.5, 1, 5], [2, 2, 0.4, 1, 2, 0.8, 7]], np.float32),
    }


def _votenet(src: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> None:
    """scene0000_00 (good) and scene0001_00 with ``edit`` applied to its arrays."""
    src.mkdir(parents=True)
    for scene, broken in (("scene0000_00", False), ("scene0001_00", True)):
        arrays = _votenet_arrays()
        if broken:
            edit(arrays)
        for key, arr in arrays.items():
            np.save(src / f"{scene}_{key}.npy", arr)


def _set(key: str, index, value) -> Callable[[dict[str, np.ndarray]], None]:
    def edit(arrays: dict[str, np.ndarray]) -> None:
        arr = arrays[key].astype(np.float64) if isinstance(value, float) else arrays[key]
        arr[index] = value
        arrays[key] = arr

    return edit


def _sun_prepared(src: Path, pc_edit=None, box_edit=None) -> None:
    """VoteNet's SUN RGB-D files: 000001 (good) and 000002 (``pc_edit`` / ``box_edit`` applied)."""
    src.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for idx, broken in (("000001", False), ("000002", True)):
        pc = np.concatenate([rng.uniform(0, 3, (30, 3)), rng.uniform(0, 1, (30, 3))], 1).astype(np.float32)
        boxes = np.array([[1, 2, 0.5, 0.4, 0.3, 0.2, 0.7, 3], [0.5, 1, 0.4, 0.5, 0.6, 0.4, 0.1, 0]], np.float32)
        if broken and pc_edit:
            pc_edit(pc)
        if broken and box_edit:
            box_edit(boxes)
        np.savez(src / f"{idx}_pc.npz", pc=pc)
        np.save(src / f"{idx}_bbox.npy", boxes)


def _sun_trainval(shared: Path, src: Path, label_edit: Callable[[list[str]], list[str]]) -> None:
    """The real scene 000001 twice (000001 and 000002); ``label_edit`` rewrites 000002's v1 label lines."""
    t = src / "sunrgbd_trainval"
    for sub, ext in (("label_v1", "txt"), ("lidar", "npz")):
        (t / sub).mkdir(parents=True)
        for idx in ("000001", "000002"):
            shutil.copyfile(shared / "sunrgbd" / "sunrgbd_trainval" / sub / f"000001.{ext}", t / sub / f"{idx}.{ext}")
    lines = (t / "label_v1" / "000002.txt").read_text().splitlines()
    (t / "label_v1" / "000002.txt").write_text("\n".join(label_edit(lines)) + "\n")


def _label_field(line_no: int, field: int, value: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        parts = lines[line_no - 1].split()
        parts[field] = value
        return [*lines[: line_no - 1], " ".join(parts), *lines[line_no:]]

    return edit


def _sun_mat(shared: Path, src: Path, write_mat: Callable[[Path], None]) -> None:
    """As ``_sun_trainval``, but 000002's points come from the raw ``depth/000002.mat`` that ``write_mat`` writes."""
    _sun_trainval(shared, src, lambda lines: lines)
    t = src / "sunrgbd_trainval"
    (t / "lidar" / "000002.npz").unlink()
    (t / "depth").mkdir()
    write_mat(t / "depth" / "000002.mat")


def _mat_without_instance(path: Path) -> None:
    from scipy.io import savemat  # writes a real MATLAB v5 file

    savemat(path, {"points": np.zeros((5, 6))})


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    fmt: str
    write: Callable[[Path, Path], None]  # (shared data, source folder)
    good: str  # unit names as the manifest lists them
    bad: str
    names: Callable[[Path], list[str]]  # fragments the error must contain (bad file, where, what was expected)


def _sens_case(break_frame=None, names=lambda s: [], **kw) -> Case:
    return Case("scannet-sens", lambda sh, s: _sens(sh, s, break_frame, **kw), "good.sens", "bad.sens", names)


def _rgbd_case(edit, names) -> Case:
    return Case("scannet-rgbd", lambda sh, s: _rgbd(sh, s, edit), "scans/scene0000_00", "scans/scene0001_00", names)


def _s3dis_case(files, names) -> Case:
    return Case("s3dis-raw", lambda sh, s: _s3dis(sh, s, files), "Area_1/office_2", "Area_1/office_9", names)


def _votenet_case(edit, names) -> Case:
    return Case("scannet-votenet", lambda sh, s: _votenet(s, edit), "scene0000_00", "scene0001_00", names)


def _sun_case(write, names) -> Case:
    return Case("sunrgbd", write, "000001", "000002", names)


def _chair_file(src: Path) -> str:
    return str(src / "Area_1" / "office_9" / "Annotations" / "chair_1.txt")


def _scene1(src: Path, rel: str) -> str:
    return str(src / "scans" / "scene0001_00" / rel)


def _vn(src: Path, key: str) -> str:
    return str(src / f"scene0001_00_{key}.npy")


def _row1(col: int, value: float) -> Callable[[np.ndarray], None]:
    """An edit setting row 1, column ``col`` of an array (points or boxes) to ``value``."""

    def edit(a: np.ndarray) -> None:
        a[1, col] = value

    return edit


K7 = np.array([[585.0, 0, 320], [0, 585, 240], [0, 0, 1]])  # 7-Scenes (camera-intrinsics.txt)
KD_640 = np.array([[577.6, 0, 319.5], [0, 578.7, 239.5], [0, 0, 1]])  # a 640x480 depth camera (ScanNet-like)

CASES: dict[str, Case] = {
    # ScanNet .sens: compressed frames that do not decode, and a file cut short
    "sens-corrupt-zlib-depth": _sens_case(_garble_depth, lambda s: [str(s / "bad.sens"), "frame 1", "zlib"]),
    "sens-corrupt-jpeg": _sens_case(None, lambda s: [str(s / "bad.sens"), "frame 1", "jpeg"],
                                    color_override={1: b"not a jpeg" * 7}),
    "sens-truncated": _sens_case(lambda d, off: d[: off[2] + 100], lambda s: [str(s / "bad.sens"), "frame 2"]),
    "sens-colour-size-differs-from-header": _sens_case(
        None, lambda s: [str(s / "bad.sens"), "frame 1", "320x240", "640x480"],
        color_override={1: _jpeg(np.full((240, 320, 3), 128, np.uint8))}),
    # exported RGB-D frames: cameras that do not fit the images
    "rgbd-depth-size-differs": _rgbd_case(
        _shrink_depth, lambda s: [_scene1(s, "depth/50.png"), "320x240", _scene1(s, "intrinsic/intrinsic_depth.txt")]),
    "rgbd-missing-intrinsic-depth": _rgbd_case(
        lambda sc: (sc / "intrinsic" / "intrinsic_depth.txt").unlink(),
        lambda s: [_scene1(s, "intrinsic/intrinsic_depth.txt"), "missing", "1296x968"]),
    "rgbd-principal-point-outside-image": _rgbd_case(
        lambda sc: _intrinsic(sc, "intrinsic_color.txt", K7 * [[1, 1, 3], [1, 1, 3], [1, 1, 1]]),
        lambda s: [_scene1(s, "intrinsic/intrinsic_color.txt"), "960", "640x480"]),
    "rgbd-depth-halved-intrinsics-unchanged": _rgbd_case(
        _halve_depth_keep_its_camera,
        lambda s: [_scene1(s, "intrinsic/intrinsic_depth.txt"), "319.5", "320x240", _scene1(s, "depth/0.png")]),
    "rgbd-colour-resized-intrinsics-unchanged": _rgbd_case(
        _resize_colour_keep_its_camera,
        lambda s: [_scene1(s, "intrinsic/intrinsic_color.txt"), "320", "400x300", _scene1(s, "color/0.jpg")]),
    "rgbd-corrupt-jpeg": _rgbd_case(
        lambda sc: (sc / "color" / "50.jpg").write_bytes(b"\xff\xd8 not really a jpeg"),
        lambda s: [_scene1(s, "color/50.jpg"), "JPEG"]),
    # S3DIS raw rooms: values that are not numbers are not "repaired" into numbers
    "s3dis-nan-coordinate": _s3dis_case(_chair("nan 0.5 0.2 10 20 30"),
                                        lambda s: [_chair_file(s) + ":3", "finite"]),
    "s3dis-inf-coordinate": _s3dis_case(_chair("0.5 inf 0.2 10 20 30"),
                                        lambda s: [_chair_file(s) + ":3", "finite"]),
    "s3dis-power-sign": _s3dis_case(_chair("1.1^2 0.5 0.2 10 20 30"),
                                    lambda s: [_chair_file(s) + ":3", "'1.1^2 0.5 0.2 10 20 30'", "x y z r g b"]),
    "s3dis-letter-o-for-zero": _s3dis_case(_chair("1O0 0.5 0.2 10 20 30"),
                                           lambda s: [_chair_file(s) + ":3", "1O0", "x y z r g b"]),
    "s3dis-five-fields": _s3dis_case(_chair("0.5 0.5 0.2 10 20"), lambda s: [_chair_file(s) + ":3", "x y z r g b"]),
    "s3dis-colour-out-of-range": _s3dis_case(_chair("0.5 0.5 0.2 300 20 30"),
                                             lambda s: [_chair_file(s) + ":3", "300", "0..255"]),
    "s3dis-empty-annotations": _s3dis_case(
        {"chair_1.txt": [], "table_1.txt": []},
        lambda s: [str(s / "Area_1" / "office_9" / "Annotations"), "empty"]),
    # ScanNet VoteNet export: ids that are not NYU40 ids, geometry that is not finite or not a box
    "votenet-negative-nyu40-id": _votenet_case(_set("sem_label", 7, -5),
                                               lambda s: [_vn(s, "sem_label"), "row 7", "-5", "0..40"]),
    "votenet-fractional-nyu40-id": _votenet_case(_set("sem_label", 7, 3.7),
                                                 lambda s: [_vn(s, "sem_label"), "row 7", "3.7", "integer"]),
    "votenet-nyu40-id-above-40": _votenet_case(_set("sem_label", 3, 41),
                                               lambda s: [_vn(s, "sem_label"), "row 3", "41", "0..40"]),
    "votenet-nan-point": _votenet_case(_set("vert", (4, 1), np.nan),
                                       lambda s: [_vn(s, "vert"), "row 4", "finite"]),
    "votenet-nan-colour": _votenet_case(_set("vert", (4, 4), np.nan),
                                        lambda s: [_vn(s, "vert"), "row 4", "finite"]),
    "votenet-nan-box": _votenet_case(_set("bbox", (1, 0), np.nan),
                                     lambda s: [_vn(s, "bbox"), "row 1", "finite"]),
    "votenet-negative-box-size": _votenet_case(_set("bbox", (1, 4), -2.0),
                                               lambda s: [_vn(s, "bbox"), "row 1", "-2", "positive"]),
    "votenet-fractional-box-class": _votenet_case(_set("bbox", (0, 6), 3.7),
                                                  lambda s: [_vn(s, "bbox"), "row 0", "3.7", "integer"]),
    "votenet-no-points": _votenet_case(
        lambda a: a.update(vert=np.zeros((0, 6), np.float32), sem_label=np.zeros(0, np.int64),
                           ins_label=np.zeros(0, np.int64)),
        lambda s: [_vn(s, "vert"), "no points"]),
    # SUN RGB-D: VoteNet's prepared files and the sunrgbd_trainval labels
    "sunrgbd-unknown-class-id": _sun_case(
        lambda sh, s: _sun_prepared(s, box_edit=_row1(7, 12)),
        lambda s: [str(s / "000002_bbox.npy"), "row 1", "12", "0..9"]),
    "sunrgbd-nan-box": _sun_case(lambda sh, s: _sun_prepared(s, box_edit=_row1(1, np.nan)),
                                 lambda s: [str(s / "000002_bbox.npy"), "row 1", "finite"]),
    "sunrgbd-negative-box-size": _sun_case(lambda sh, s: _sun_prepared(s, box_edit=_row1(4, -0.3)),
                                           lambda s: [str(s / "000002_bbox.npy"), "row 1", "positive"]),
    "sunrgbd-nan-point": _sun_case(lambda sh, s: _sun_prepared(s, pc_edit=_row1(2, np.nan)),
                                   lambda s: [str(s / "000002_pc.npz"), "row 1", "finite"]),
    "sunrgbd-label-not-a-number": _sun_case(
        lambda sh, s: _sun_trainval(sh, s, _label_field(1, 6, "1.2.3")),
        lambda s: [str(s / "sunrgbd_trainval" / "label_v1" / "000002.txt") + ":1", "1.2.3"]),
    "sunrgbd-label-nan-centre": _sun_case(
        lambda sh, s: _sun_trainval(sh, s, _label_field(1, 5, "nan")),
        lambda s: [str(s / "sunrgbd_trainval" / "label_v1" / "000002.txt") + ":1", "finite"]),
    "sunrgbd-label-negative-size": _sun_case(
        lambda sh, s: _sun_trainval(sh, s, _label_field(1, 9, "-0.4")),
        lambda s: [str(s / "sunrgbd_trainval" / "label_v1" / "000002.txt") + ":1", "positive"]),
    "sunrgbd-mat-unreadable": _sun_case(
        lambda sh, s: _sun_mat(sh, s, lambda p: p.write_bytes(np.random.default_rng(2).bytes(2000))),
        lambda s: [str(s / "sunrgbd_trainval" / "depth" / "000002.mat"), "MATLAB", "'instance'"]),
    "sunrgbd-mat-without-instance-key": _sun_case(
        lambda sh, s: _sun_mat(sh, s, _mat_without_instance),
        lambda s: [str(s / "sunrgbd_trainval" / "depth" / "000002.mat"), "'instance'", "'points'"]),
}


def _npz_files(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*.npz") if not p.name.startswith(".tmp-")}


def _error_text(err: str) -> str:
    """The error message: everything from the one ``t4p: error:`` line on (a list of bad units may follow)."""
    starts = [i for i, ln in enumerate(err.splitlines()) if ln.startswith("t4p: error:")]
    assert len(starts) == 1, err
    return "\n".join(err.splitlines()[starts[0] :])


@pytest.mark.parametrize("name", list(CASES))
def test_bad_unit_is_an_error_naming_the_file_and_is_not_cached(name, shared_data, tmp_path, capsys):
    case = CASES[name]
    src, out = tmp_path / "src", tmp_path / "out"
    case.write(shared_data, src)
    code = main(["data", "prepare", case.fmt, str(src), str(out), *SMALL])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    msg = _error_text(err)
    for fragment in case.names(src):
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    m = read_manifest(out)
    assert not m["complete"]
    assert list(m["units"]) == [case.good] and list(m["bad_units"]) == [case.bad]
    assert m["units"][case.good]["files"] and _npz_files(out) == set(m["units"][case.good]["files"])


# --------------------------------------------------------------------------- bad command-line settings


def _flag_source(shared: Path, src: Path, fmt: str) -> None:
    """A good source of ``fmt``: one exported 7-Scenes scene, or the S3DIS fixture room."""
    if fmt == "scannet-rgbd":
        layout_exported(shared, src / "scans" / "scene0000_00", frames=(0, 50))
    else:
        layout_s3dis_room(shared, src)


FLAG_CASES: dict[str, tuple[str, str, list[str], list[str]]] = {
    # name: (command, format, bad flags, fragments the error must contain)
    "frame-skip-0": ("prepare", "scannet-rgbd", ["--frame-skip", "0"], ["--frame-skip", "data.frame_skip", ">= 1",
                                                                         "got 0"]),
    "frame-skip-negative": ("prepare", "scannet-rgbd", ["--frame-skip", "-1"], ["--frame-skip", ">= 1", "got -1"]),
    "voxel-size-0": ("prepare", "scannet-rgbd", ["--voxel-size", "0"], ["--voxel-size", "data.voxel_size", "> 0",
                                                                        "got 0"]),
    "voxel-size-nan": ("prepare", "scannet-rgbd", ["--voxel-size", "nan"], ["--voxel-size", "finite", "got nan"]),
    "height-0": ("prepare", "scannet-rgbd", ["--height", "0"], ["--height", "data.image_height", ">= 1", "got 0"]),
    "width-negative": ("prepare", "scannet-rgbd", ["--width", "-80"], ["--width", "data.image_width", "got -80"]),
    "depth-tol-negative": ("prepare", "scannet-rgbd", ["--depth-tol", "-0.02"], ["--depth-tol", "data.corr_depth_tol",
                                                                                 "> 0", "got -0.02"]),
    "classes-unknown": ("prepare", "s3dis-raw", ["--classes", "nope"], ["--classes", "data.classes", "'nope'",
                                                                        "s3dis13"]),
    "inspect-frame-skip-0": ("inspect", "scannet-rgbd", ["--frame-skip", "0"], ["--frame-skip", ">= 1", "got 0"]),
    "inspect-classes-unknown": ("inspect", "s3dis-raw", ["--classes", "nope"], ["--classes", "'nope'", "s3dis13"]),
}


@pytest.mark.parametrize("name", list(FLAG_CASES))
def test_bad_setting_is_an_error_naming_the_flag(name, shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("T4P_DEBUG", raising=False)
    command, fmt, flags, fragments = FLAG_CASES[name]
    src, out = tmp_path / "src", tmp_path / "out"
    _flag_source(shared_data, src, fmt)
    where = [fmt, str(src), str(out)] if command == "prepare" else [str(src), "--format", fmt]
    code = main(["data", command, *where, *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    msg = _error_text(err)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    assert not out.exists()  # refused before anything was read or cached


def test_corrupt_manifest_is_an_error_suggesting_force(tmp_path, capsys):
    from t4p.data.datasets import StaleCacheError, make_dataset

    src, out = _tiny_rooms(tmp_path / "s3dis", 2), tmp_path / "out"
    assert main(["data", "prepare", "s3dis-raw", str(src), str(out)]) == 0
    (out / "manifest.json").write_text('{"format": "s3dis-raw", "units": {')  # cut short
    assert main(["data", "prepare", "s3dis-raw", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    msg = _error_text(err)
    assert str(out / "manifest.json") in msg and "--force" in msg, msg
    cfg = _semseg_cfg(tmp_path, src)
    cfg.data.prepared_dir = str(tmp_path / "cache")
    assert len(make_dataset(cfg, "train")) == 2
    manifest = next((tmp_path / "cache").rglob("manifest.json"))
    manifest.write_text("[1, 2]")  # JSON, but not a manifest
    with pytest.raises(StaleCacheError, match=f"{manifest}.*--force"):
        make_dataset(cfg, "train", prepare=False)
    assert main(["data", "prepare", "s3dis-raw", str(src), str(out), "--force"]) == 0
    m = read_manifest(out)
    assert m["complete"] and sorted(m["units"]) == ["Area_1/office_1", "Area_1/office_2"]


# --------------------------------------------------------------------------- what is dropped is counted


SUN10 = ("bed", "table", "sofa", "chair", "toilet", "desk", "dresser", "night_stand", "bookshelf", "bathtub")


def _other_class_names(label_file: Path) -> dict[str, int]:
    """Reference: the names of a label file outside VoteNet's 10 SUN RGB-D classes, counted."""
    names = [ln.split()[0] for ln in label_file.read_text().splitlines() if ln.strip()]
    return {n: names.count(n) for n in names if n not in SUN10}


def test_sunrgbd_boxes_of_other_classes_are_counted_and_warned(shared_data, tmp_path, capsys, caplog):
    src, out = tmp_path / "src", tmp_path / "out"
    _sun_trainval(shared_data, src, _label_field(1, 0, "chiar"))  # a misspelt chair: a box of another class
    labels = src / "sunrgbd_trainval" / "label_v1"
    want = {idx: _other_class_names(labels / f"{idx}.txt") for idx in ("000001", "000002")}
    assert want["000002"]["chiar"] == 1 and sum(want["000001"].values()) >= 1
    with caplog.at_level(logging.WARNING):
        assert main(["data", "prepare", "sunrgbd", str(src), str(out)]) == 0
    m = read_manifest(out)
    assert {u: e["dropped_boxes"] for u, e in m["units"].items()} == want
    assert m["totals"]["dropped_boxes"] == sum(sum(w.values()) for w in want.values())
    assert all("warnings" not in e for e in m["units"].values())
    warned = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warned) == 2 and str(labels / "000002.txt") in warned[1] and "chiar" in warned[1], warned
    assert main(["data", "inspect", str(src), "--format", "sunrgbd"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["dropped_boxes"] == {n: want["000001"].get(n, 0) + want["000002"].get(n, 0)
                                     for n in {**want["000001"], **want["000002"]}}


def test_dropped_box_warnings_are_summarised_across_units(shared_data, tmp_path, caplog):
    src, out = tmp_path / "src", tmp_path / "out"
    _sun_trainval(shared_data, src, lambda lines: lines)
    labels = src / "sunrgbd_trainval" / "label_v1"
    for i in range(3, 9):  # 8 scenes, each with boxes of other classes
        for sub, ext in (("label_v1", "txt"), ("lidar", "npz")):
            shutil.copyfile(labels.parent / sub / f"000001.{ext}", labels.parent / sub / f"{i:06d}.{ext}")
    with caplog.at_level(logging.WARNING):
        assert main(["data", "prepare", "sunrgbd", str(src), str(out)]) == 0
    lines = [r.getMessage() for r in caplog.records]
    assert sum("dropped" in ln and str(labels) in ln for ln in lines) == 5
    assert sum("3 more" in ln for ln in lines) == 1, lines


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if k != "T4P_DEBUG"}, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "t4p.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=env)


@pytest.mark.parametrize("name", ["sens-corrupt-zlib-depth", "s3dis-letter-o-for-zero"])
def test_real_process_exits_2_without_traceback(name, shared_data, tmp_path):
    case = CASES[name]
    src = tmp_path / "src"
    case.write(shared_data, src)
    proc = _cli("data", "prepare", case.fmt, str(src), str(tmp_path / "out"), *SMALL)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    msg = _error_text(proc.stderr)
    assert all(fragment in msg for fragment in case.names(src)), msg


def test_every_bad_unit_is_listed_after_the_good_ones_are_cached(shared_data, tmp_path, capsys):
    src, out = tmp_path / "s3dis", tmp_path / "out"
    layout_s3dis_room(shared_data, src)  # Area_1/office_2: good
    bad_lines = {"office_3": "1O0 0 0 10 20 30", "office_4": "nan 0 0 1 2 3", "office_5": "1.1^2 0 0 1 2 3"}
    for room, line in bad_lines.items():
        ann = src / "Area_1" / room / "Annotations"
        ann.mkdir(parents=True)
        (ann / "chair_1.txt").write_text(f"0 0 0 1 2 3\n{line}\n")
    assert main(["data", "prepare", "s3dis-raw", str(src), str(out), "--workers", "2"]) == 2
    msg = _error_text(capsys.readouterr().err)
    for room in bad_lines:
        assert f"{src / 'Area_1' / room / 'Annotations' / 'chair_1.txt'}:2" in msg
    assert "3 of 4 units" in msg and "data.on_bad=skip" in msg
    m = read_manifest(out)
    assert sorted(m["bad_units"]) == [f"Area_1/{r}" for r in bad_lines] and _npz_files(out) == {"Area_1/office_2.npz"}


# --------------------------------------------------------------------------- what is repaired or scaled, correctly


def test_control_character_inside_a_number_is_the_one_repair(tmp_path, capsys):
    """Area_5/hallway_6/Annotations/ceiling_1.txt has ``103.0\\x100000``: the stray control character goes."""
    ann = tmp_path / "s3dis" / "Area_5" / "hallway_6" / "Annotations"
    ann.mkdir(parents=True)
    (ann / "ceiling_1.txt").write_text("1 2 3 10 20 30\n19.302 -9.160 3.043 103.0\x100000 196 184\n")
    out = tmp_path / "out"
    assert main(["data", "prepare", "s3dis-raw", str(tmp_path / "s3dis"), str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["repaired_lines"] == 1
    entry = read_manifest(out)["units"]["Area_5/hallway_6"]
    assert entry["repaired_lines"] == [f"{ann / 'ceiling_1.txt'}:2"]
    with np.load(out / "Area_5" / "hallway_6.npz") as z:
        np.testing.assert_allclose(z["xyz"][1], [19.302, -9.160, 3.043], rtol=1e-6)
        assert z["rgb"][1].tolist() == [103, 196, 184]


def _plane_depth(K: np.ndarray, h: int, w: int, n=(0.2, -0.1, 1.0), dist: float = 2.0) -> np.ndarray:
    """Depth z of the plane n . X = dist seen through K (pixel centres at integer coordinates)."""
    v, u = np.mgrid[0:h, 0:w]
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones((h, w))], -1)
    return dist / (rays @ np.asarray(n))


def test_known_scannet_pair_scales_the_colour_intrinsics_to_the_depth_image(tmp_path, capsys):
    """ScanNet's export pair, 1296x968 colour and 640x480 depth, without intrinsic_depth.txt: the depth camera is
    the colour camera scaled by 640/1296 and 480/968 (hand-computed below), and the prepared depth is the
    plane's depth seen by the resized colour camera."""
    from t4p.data.scannet_rgbd import read_exported_scene

    Kc = np.array([[1170.0, 0, 647.5], [0, 1170.0, 483.5], [0, 0, 1]])
    # fx * 640/1296, (cx + 0.5) * 640/1296 - 0.5; fy * 480/968, (cy + 0.5) * 480/968 - 0.5
    Kd = np.array([[577.7777777777778, 0, 319.5], [0, 580.1652892561983, 239.5], [0, 0, 1]])
    scene = tmp_path / "scans" / "scene0000_00"
    for sub in ("color", "depth", "pose", "intrinsic"):
        (scene / sub).mkdir(parents=True)
    _intrinsic(scene, "intrinsic_color.txt", Kc)
    (scene / "color" / "0.jpg").write_bytes(_jpeg(np.full((968, 1296, 3), 90, np.uint8)))
    Image.fromarray(np.rint(_plane_depth(Kd, 480, 640) * 1000).astype(np.uint16)).save(scene / "depth" / "0.png")
    np.savetxt(scene / "pose" / "0.txt", np.eye(4))
    (frame,) = read_exported_scene(scene, frame_skip=1)
    np.testing.assert_allclose(frame.K_depth, Kd, rtol=1e-12)
    out = tmp_path / "out"
    assert main(["data", "prepare", "scannet-rgbd", str(tmp_path), str(out), *SMALL]) == 0, capsys.readouterr().err
    with np.load(out / "scene0000_00" / "000000.npz") as z:
        depth, K = z["depth"].astype(np.float64), z["K"]
    # the colour camera at 60x80: fx * 80/1296, (cx + 0.5) * 80/1296 - 0.5, ...
    np.testing.assert_allclose(K, [[72.22222222222223, 0, 39.5], [0, 72.5206611570248, 29.5], [0, 0, 1]])
    want, valid = _plane_depth(K, 60, 80), depth > 0
    assert valid.mean() > 0.9 and np.abs(depth[valid] - want[valid]).max() < 0.01


# --------------------------------------------------------------------------- data.on_bad=skip


def test_on_bad_skip_leaves_bad_units_out_and_counts_them(shared_data, tmp_path, capsys):
    case = CASES["votenet-negative-nyu40-id"]
    src, out = tmp_path / "src", tmp_path / "out"
    case.write(shared_data, src)
    assert main(["data", "prepare", case.fmt, str(src), str(out), "--on-bad", "skip"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (res["units"], res["skipped_units"]) == (1, 1)
    m = read_manifest(out)
    assert m["complete"] and list(m["units"]) == [case.good] and m["totals"]["skipped_units"] == 1
    assert "row 7" in m["bad_units"][case.bad]["problem"] and _npz_files(out) == {"scene0000_00.npz"}
    assert main(["data", "inspect", str(src), "--format", case.fmt, "--on-bad", "skip"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["skipped_units"] == 1 and _vn(src, "sem_label") in info["bad_units"][case.bad]
    assert info["num_points"] == 20 and info["num_boxes"] == 2  # the good scene only
    assert main(["data", "inspect", str(src), "--format", case.fmt]) == 2  # default: data.on_bad=error
    assert _vn(src, "sem_label") in _error_text(capsys.readouterr().err)


def test_dataset_with_on_bad_skip_trains_on_the_good_units(shared_data, tmp_path):
    from t4p.config import Config
    from t4p.data.datasets import make_dataset

    src = tmp_path / "s3dis"
    _s3dis(shared_data, src, _chair("1O0 0 0 10 20 30"))
    cfg = Config()
    cfg.train.task, cfg.train.out_dir = "semseg", str(tmp_path / "runs")
    cfg.data.dataset, cfg.data.root = "s3dis-raw", str(src)
    with pytest.raises(UserError, match=r"office_9/Annotations/chair_1\.txt:3"):
        make_dataset(cfg, "train")
    cfg.data.on_bad = "skip"
    ds = make_dataset(cfg, "train")
    assert [f.name for f in ds.files] == ["office_2.npz"]


# --------------------------------------------------------------------------- fingerprinted caches


def _tiny_rooms(root: Path, n: int) -> Path:
    for i in range(n):
        ann = root / "Area_1" / f"office_{i + 1}" / "Annotations"
        ann.mkdir(parents=True)
        (ann / "chair_1.txt").write_text(f"0 0 0 10 20 30\n0.5 0 {i} 10 20 30\n")
    return root


def _identity(out: Path) -> dict[str, tuple[int, int]]:
    return {f: ((out / f).stat().st_ino, (out / f).stat().st_mtime_ns) for f in _npz_files(out)}


def _arrays(out: Path) -> dict[str, dict[str, np.ndarray]]:
    res = {}
    for f in _npz_files(out):
        with np.load(out / f) as z:
            res[f] = {k: z[k] for k in z.files}
    return res


def test_changed_source_re_prepares_exactly_its_unit(tmp_path, capsys, caplog):
    src, out = _tiny_rooms(tmp_path / "s3dis", 3), tmp_path / "out"
    assert main(["data", "prepare", "s3dis-raw", str(src), str(out)]) == 0
    before = _identity(out)
    with open(src / "Area_1" / "office_2" / "Annotations" / "chair_1.txt", "a") as f:
        f.write("2 2 2 40 50 60\n")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(["data", "prepare", "s3dis-raw", str(src), str(out)]) == 0
    after = _identity(out)
    assert [f for f in after if after[f] != before[f]] == ["Area_1/office_2.npz"]
    assert "re-preparing 1 of 3 units whose sources changed: Area_1/office_2" in caplog.text
    clean = tmp_path / "clean"
    assert main(["data", "prepare", "s3dis-raw", str(src), str(clean)]) == 0
    got, want = _arrays(out), _arrays(clean)
    assert got.keys() == want.keys()
    for f in want:
        assert got[f].keys() == want[f].keys()
        for k in want[f]:
            np.testing.assert_array_equal(got[f][k], want[f][k])
    with np.load(out / "Area_1" / "office_2.npz") as z:
        assert len(z["xyz"]) == 3  # the appended point is in
    m, mc = read_manifest(out), read_manifest(clean)
    assert m["units"] == mc["units"] and m["totals"] == mc["totals"]


def test_force_rebuilds_every_unit(tmp_path, capsys, caplog):
    src, out = _tiny_rooms(tmp_path / "s3dis", 2), tmp_path / "out"
    assert main(["data", "prepare", "s3dis-raw", str(src), str(out)]) == 0
    before = _identity(out)
    with caplog.at_level(logging.INFO):
        assert main(["data", "prepare", "s3dis-raw", str(src), str(out)]) == 0
        assert _identity(out) == before and "2 of 2 units already prepared" in caplog.text
        assert main(["data", "prepare", "s3dis-raw", str(src), str(out), "--force"]) == 0
    after = _identity(out)
    assert after.keys() == before.keys() and all(after[f][0] != before[f][0] for f in before)
    assert "--force" in caplog.text


def test_units_record_source_and_config_fingerprints(tmp_path, capsys):
    src, out = _tiny_rooms(tmp_path / "s3dis", 1), tmp_path / "out"
    assert main(["data", "prepare", "s3dis-raw", str(src), str(out)]) == 0
    fp = read_manifest(out)["units"]["Area_1/office_1"]["fingerprint"]
    ann = src / "Area_1" / "office_1" / "Annotations"
    assert fp["files"] == 2 and fp["bytes"] == (ann / "chair_1.txt").stat().st_size + ann.stat().st_size
    assert fp["config"] == read_manifest(out)["config_hash"]
    assert main(["data", "prepare", "s3dis-raw", str(src), str(out), "--classes", "s3dis13"]) == 0


def _semseg_cfg(tmp_path: Path, root: Path):
    from t4p.config import Config

    cfg = Config()
    cfg.train.task, cfg.train.out_dir = "semseg", str(tmp_path / "runs")
    cfg.data.dataset, cfg.data.root = "s3dis-raw", str(root)
    return cfg


def test_dataset_refuses_a_stale_foreign_or_incomplete_cache(tmp_path, caplog):
    from t4p.data.datasets import StaleCacheError, make_dataset, prepare_settings, prepared_dir
    from t4p.io import write_json

    root = _tiny_rooms(tmp_path / "s3dis", 2)
    cfg = _semseg_cfg(tmp_path, root)
    assert len(make_dataset(cfg, "train")) == 2
    out = prepared_dir(cfg, "s3dis-raw", root, prepare_settings(cfg))
    manifest = read_manifest(out)
    (root / "Area_1" / "office_1" / "Annotations" / "chair_1.txt").write_text("0 0 0 1 1 1\n")
    with pytest.raises(StaleCacheError, match=r"Area_1/office_1.*changed") as err:
        make_dataset(cfg, "train", prepare=False)
    assert str(out) in str(err.value) and "t4p data prepare" in str(err.value)
    write_json(out / "manifest.json", {**manifest, "config_hash": "0123456789abcdef"})
    with pytest.raises(StaleCacheError, match="other settings"):
        make_dataset(cfg, "train", prepare=False)
    write_json(out / "manifest.json", {**manifest, "complete": False})
    with pytest.raises(StaleCacheError, match="incomplete"):
        make_dataset(cfg, "train", prepare=False)
    with caplog.at_level(logging.INFO):
        assert len(make_dataset(cfg, "train")) == 2  # allowed to prepare: exactly the stale unit is redone
    assert "Area_1/office_1" in caplog.text
    assert len(make_dataset(cfg, "train", prepare=False)) == 2


def test_a_sweep_trial_refuses_a_cache_that_went_stale_and_leaves_it_alone(tmp_path):
    """Trials of a sweep share one cache (the driver prepared it): one that finds it stale must not re-prepare it
    under the other running trials, nor train on it."""
    from t4p.data.datasets import StaleCacheError, make_dataset, prepare_settings, prepared_dir
    from t4p.train.context import RunContext
    from t4p.train.loop import run

    root = _tiny_rooms(tmp_path / "s3dis", 2)
    cfg = _semseg_cfg(tmp_path, root)
    cfg.train.device, cfg.model.text_source, cfg.tracking.enabled = "cpu", "random", False
    assert len(make_dataset(cfg, "train")) == 2  # what the driver's warm-up does
    out = prepared_dir(cfg, "s3dis-raw", root, prepare_settings(cfg))
    before = _identity(out)
    (root / "Area_1" / "office_1" / "Annotations" / "chair_1.txt").write_text("0 0 0 1 1 1\n")

    class TrialContext(RunContext):
        shares_data_cache = True

    with pytest.raises(StaleCacheError, match=r"Area_1/office_1.*changed"):
        run(cfg, TrialContext(str(tmp_path / "runs")))
    assert _identity(out) == before
    assert not (tmp_path / "runs" / "checkpoint").exists()


def test_a_sweep_trial_prepares_a_cache_nobody_prepared_yet(tmp_path):
    from t4p.data.datasets import check_shared_cache, make_dataset

    cfg = _semseg_cfg(tmp_path, _tiny_rooms(tmp_path / "s3dis", 2))
    check_shared_cache(cfg)  # a trial whose data settings the driver did not warm (e.g. a searched voxel size)
    assert len(make_dataset(cfg, "train", prepare=False)) == 2


# --------------------------------------------------------------------------- warnings, error classes, workers


def test_long_runs_of_identical_warnings_are_summarised(shared_data, tmp_path, caplog):
    from t4p.data.scannet_rgbd import SkipStats
    from t4p.data.scannet_sens import iter_sens

    frames = tuple(range(0, 600, 50))  # 12 frames, the last 11 with ScanNet's -inf poses
    poses = [np.loadtxt(seven_scenes_frame(shared_data, i)[2]) for i in frames]
    poses[1:] = [np.full((4, 4), -np.inf)] * 11
    sens = tmp_path / "inf.sens"
    write_sens_struct(sens, shared_data, frames=frames, poses=poses)
    stats = SkipStats()
    with caplog.at_level(logging.WARNING):
        assert len(list(iter_sens(sens, frame_skip=1, stats=stats))) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert stats.counts == {"nonfinite_pose": 11}
    assert sum("skipping frame" in ln for ln in lines) == 5
    assert sum("6 more" in ln and "nonfinite pose" in ln for ln in lines) == 1


@pytest.mark.parametrize(
    "cls",
    ["t4p.data.scannet_sens.SensFormatError", "t4p.data.s3dis.S3DISFormatError",
     "t4p.data.scannet_rgbd.RGBDFormatError", "t4p.data.scannet_votenet.VoteNetFormatError",
     "t4p.data.sunrgbd.SUNRGBDFormatError", "t4p.data.prepare.BadDataError", "t4p.data.prepare.StaleCacheError"],
)
def test_data_errors_are_user_errors_and_value_errors(cls):
    import importlib

    module, name = cls.rsplit(".", 1)
    err = getattr(importlib.import_module(module), name)
    assert issubclass(err, UserError) and issubclass(err, ValueError)


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_prepare_workers_die_with_their_parent(tmp_path):
    """``t4p data prepare --workers 2`` killed with SIGKILL: its workers (blocked reading a FIFO) exit too."""
    src = tmp_path / "s3dis"
    for room in ("office_1", "office_2"):
        ann = src / "Area_1" / room / "Annotations"
        ann.mkdir(parents=True)
        os.mkfifo(ann / "chair_1.txt")  # reading it blocks until a writer comes: the workers hang there
    proc = subprocess.Popen([sys.executable, "-m", "t4p.cli", "data", "prepare", "s3dis-raw", str(src),
                             str(tmp_path / "out"), "--workers", "2"], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.1)
            workers = _children(proc.pid)
        assert len(workers) >= 2, "the pool did not start"
        time.sleep(0.5)  # the workers are now blocked in open() of the FIFO
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "workers outlived their parent"
    finally:
        for w in workers:  # the processes this test started, by id
            if _alive(w):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
