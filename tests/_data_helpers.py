"""Helpers of the data tests: lay the real shared files out in the layouts t4p reads.

The ``.sens`` writer here is written from ScanNet's published SensorData layout with
``struct`` only (independent of ``t4p.data.scannet_sens``), so reading it back tests the reader.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SEVEN_SCENES_FRAMES = tuple(range(0, 1000, 50))


def seven_scenes_frame(shared: Path, i: int) -> tuple[Path, Path, Path]:
    d = shared / "7scenes_rgbd"
    return d / f"frame-{i:06d}.color.jpg", d / f"frame-{i:06d}.depth.png", d / f"frame-{i:06d}.pose.txt"


def seven_scenes_K(shared: Path) -> np.ndarray:
    return np.loadtxt(shared / "7scenes_rgbd" / "camera-intrinsics.txt")


def layout_exported(shared: Path, scene_dir: Path, frames=SEVEN_SCENES_FRAMES) -> Path:
    """Copy 7-Scenes frames into ScanNet's exported layout, keeping the frame numbers."""
    for sub in ("color", "depth", "pose", "intrinsic"):
        (scene_dir / sub).mkdir(parents=True, exist_ok=True)
    K4 = np.eye(4)
    K4[:3, :3] = seven_scenes_K(shared)
    np.savetxt(scene_dir / "intrinsic" / "intrinsic_color.txt", K4)
    np.savetxt(scene_dir / "intrinsic" / "intrinsic_depth.txt", K4)
    for i in frames:
        c, d, p = seven_scenes_frame(shared, i)
        shutil.copyfile(c, scene_dir / "color" / f"{i}.jpg")
        shutil.copyfile(d, scene_dir / "depth" / f"{i}.png")
        shutil.copyfile(p, scene_dir / "pose" / f"{i}.txt")
    return scene_dir


def write_sens_struct(
    path: Path, shared: Path, frames=SEVEN_SCENES_FRAMES, poses=None, color_override: dict | None = None
) -> list[int]:
    """A ScanNet ``.sens`` (version 4, JPEG colour, zlib depth) holding the given 7-Scenes frames.

    Returns the byte offset where each frame's header starts.
    """
    K4 = np.eye(4, dtype=np.float32)
    K4[:3, :3] = seven_scenes_K(shared)
    offsets = []
    with open(path, "wb") as f:
        name = b"7scenes-kinect"
        f.write(struct.pack("<I", 4))
        f.write(struct.pack("<Q", len(name)) + name)
        for m in (K4, np.eye(4), K4, np.eye(4)):  # intrinsic/extrinsic colour, intrinsic/extrinsic depth
            f.write(struct.pack("<16f", *np.asarray(m, np.float32).reshape(-1)))
        f.write(struct.pack("<ii", 2, 1))  # jpeg, zlib_ushort
        f.write(struct.pack("<IIII", 640, 480, 640, 480))
        f.write(struct.pack("<f", 1000.0))
        f.write(struct.pack("<Q", len(frames)))
        for k, i in enumerate(frames):
            c, d, p = seven_scenes_frame(shared, i)
            color = (color_override or {}).get(k, c.read_bytes())
            depth = zlib.compress(np.array(Image.open(d)).astype("<u2").tobytes())
            pose = np.loadtxt(p) if poses is None else poses[k]
            offsets.append(f.tell())
            f.write(struct.pack("<16f", *np.asarray(pose, np.float32).reshape(-1)))
            f.write(struct.pack("<QQQQ", 1000 * k, 1000 * k, len(color), len(depth)))
            f.write(color)
            f.write(depth)
        f.write(struct.pack("<Q", 0))  # IMU frames
    return offsets


def s3dis_fixture(shared: Path):
    d = shared / "s3dis_fixture"
    pts = np.fromfile(d / "points" / "Area_1_office_2.bin", dtype=np.float32).reshape(-1, 6)
    sem = np.fromfile(d / "semantic_mask" / "Area_1_office_2.bin", dtype=np.int64)
    ins = np.fromfile(d / "instance_mask" / "Area_1_office_2.bin", dtype=np.int64)
    names = (d / "meta_data" / "class_names.txt").read_text().split()
    return pts, sem, ins, names


def layout_s3dis_room(shared: Path, root: Path, area: int = 1, room: str = "office_2") -> Path:
    """Write the S3DIS fixture as a raw Stanford room: one ``<class>_<k>.txt`` per instance."""
    pts, sem, ins, names = s3dis_fixture(shared)
    room_dir = root / f"Area_{area}" / room
    (room_dir / "Annotations").mkdir(parents=True, exist_ok=True)
    counters: dict[str, int] = {}
    lines_all = []
    for k in np.unique(ins):
        sel = ins == k
        cls = names[int(sem[sel][0])]
        counters[cls] = counters.get(cls, 0) + 1
        lines = [f"{x:.6f} {y:.6f} {z:.6f} {int(r)} {int(g)} {int(b)}" for x, y, z, r, g, b in pts[sel]]
        (room_dir / "Annotations" / f"{cls}_{counters[cls]}.txt").write_text("\n".join(lines) + "\n")
        lines_all += lines
    (room_dir / f"{room}.txt").write_text("\n".join(lines_all) + "\n")
    return room_dir


S3DIS_ROOMS = {1: 44, 2: 40, 3: 23, 4: 49, 5: 68, 6: 48}  # Stanford3dDataset_v1.2 rooms per area (272 in all)


def write_tiny_s3dis(root: Path, rooms_per_area: dict[int, int]) -> Path:
    """An S3DIS layout with the given room counts; each room one three-point chair (fast to prepare)."""
    for area, n in rooms_per_area.items():
        for i in range(n):
            ann = root / f"Area_{area}" / f"office_{i + 1}" / "Annotations"
            ann.mkdir(parents=True)
            (ann / "chair_1.txt").write_text("0 0 0 10 20 30\n0.5 0 0 10 20 30\n0 0.5 0.2 10 20 30\n")
    return root
