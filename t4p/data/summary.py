"""``t4p data inspect``: one JSON-able summary of a data source, read with the real readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from t4p.data import s3dis, scannet_votenet, sunrgbd
from t4p.data.classes import SCANNET18, SUNRGBD10, class_list
from t4p.data.pairs import backproject, resize_frame
from t4p.data.prepare import PrepareSettings, list_units
from t4p.data.scannet_rgbd import SkipStats, read_exported_scene
from t4p.data.scannet_sens import iter_sens


def _bar(items: list) -> tqdm:
    """Progress on stderr (the JSON goes to stdout); silent for a single item."""
    return tqdm(items, desc="inspect", unit="scene", leave=False, disable=len(items) < 2)


class _Bounds:
    def __init__(self):
        self.lo = np.full(3, np.inf)
        self.hi = np.full(3, -np.inf)

    def add(self, xyz: np.ndarray) -> None:
        if len(xyz):
            self.lo = np.minimum(self.lo, xyz.min(0))
            self.hi = np.maximum(self.hi, xyz.max(0))

    def to_dict(self) -> dict | None:
        if not np.isfinite(self.lo).all():
            return None
        return {"min": [round(float(v), 4) for v in self.lo], "max": [round(float(v), 4) for v in self.hi]}


def _rgbd(fmt: str, path: Path, frame_skip: int) -> dict:
    stats, bounds = SkipStats(), _Bounds()
    for unit in _bar(list_units(fmt, path, PrepareSettings(frame_skip=frame_skip))):
        if fmt == "scannet-sens":
            frames = iter_sens(path if path.is_file() else path / unit, frame_skip, stats)
        else:
            frames = read_exported_scene(path if unit == "." else path / unit, frame_skip, stats)
        for f in frames:
            _, depth, K = resize_frame(f, (120, 160))  # a coarse grid is enough for bounds
            bounds.add(backproject(depth, K, f.pose)[0])
    return {
        **stats.to_dict(),
        "skip_examples": stats.examples,
        "num_points": 0,
        "classes": {},
        "num_instances": 0,
        "num_boxes": 0,
        "bounds": bounds.to_dict(),
    }


def _s3dis(path: Path, classes: str = "s3dis13") -> dict:
    cl = class_list(classes)
    counts = np.zeros(len(cl), dtype=np.int64)
    bounds, n, n_inst, repaired, skipped = _Bounds(), 0, 0, [], []
    for _area, room_dir in _bar(s3dis.list_rooms(path)):
        room = s3dis.read_room(room_dir, classes=cl)
        counts += np.bincount(room.labels, minlength=len(cl))
        bounds.add(room.xyz)
        n += len(room.xyz)
        n_inst += len(np.unique(room.instances))
        repaired += room.repaired
        skipped += room.skipped
    return {
        "num_points": n,
        "classes": {c: int(k) for c, k in zip(cl.names, counts) if k},
        "num_instances": n_inst,
        "num_boxes": 0,
        "bounds": bounds.to_dict(),
        "repaired_lines": repaired,
        "skipped_lines": skipped,
    }


def _det(fmt: str, path: Path, label_version: str) -> dict:
    names = SCANNET18.names if fmt == "scannet-votenet" else SUNRGBD10.names
    counts = np.zeros(len(names), dtype=np.int64)
    bounds, n, n_inst, n_box = _Bounds(), 0, 0, 0
    for unit in _bar(list_units(fmt, path, PrepareSettings(label_version=label_version))):
        if fmt == "scannet-votenet":
            sc = scannet_votenet.read_scene(path, unit)
            n_inst += len(np.unique(sc.instances[sc.instances >= 0]))
        else:
            sc = sunrgbd.read_scene(path, unit, label_version)
            n_inst += len(sc.boxes)
        counts += np.bincount(sc.boxes[:, 7].astype(np.int64), minlength=len(names))
        bounds.add(sc.xyz)
        n += len(sc.xyz)
        n_box += len(sc.boxes)
    return {
        "num_points": n,
        "classes": {c: int(k) for c, k in zip(names, counts) if k},
        "num_instances": n_inst,
        "num_boxes": n_box,
        "bounds": bounds.to_dict(),
    }


def inspect_source(
    path: str | Path, fmt: str, frame_skip: int = 25, label_version: str = "v1", classes: str = "s3dis13"
) -> dict:
    """Summary of ``path`` read as ``fmt``: points or frames, classes, instances, boxes, bounds (m)."""
    path = Path(path)
    if fmt in ("scannet-sens", "scannet-rgbd"):
        out = _rgbd(fmt, path, frame_skip)
    elif fmt == "s3dis-raw":
        out = _s3dis(path, classes)
    elif fmt in ("scannet-votenet", "sunrgbd"):
        out = _det(fmt, path, label_version)
    else:
        raise ValueError(f"unknown data format {fmt!r}")
    return {"format": fmt, "path": str(path), **out}
