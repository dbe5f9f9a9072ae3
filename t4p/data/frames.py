"""The hooks the two RGB-D formats share (``scannet-sens``, ``scannet-rgbd``): frames -> 2D-3D pair caches.

Each format provides ``open_frames(src, unit, frame_skip, stats) -> (scene, frames)``; the functions here
take it as their first argument (``functools.partial`` in ``t4p.data.formats``). A unit's cache is
``<scene>/<frame>.npz`` per usable frame (see ``t4p.data.pairs``); a unit that turns out bad part-way
leaves none of its files behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from t4p.data.format_api import PrepareSettings
from t4p.data.pairs import backproject, build_pairs, resize_frame, save_pairs
from t4p.data.scannet_rgbd import RGBDFrame, SkipStats
from t4p.errors import UserError

OpenFrames = Callable[[Path, str, int, SkipStats], tuple[str, Iterator[RGBDFrame]]]
INSPECT_HW = (120, 160)  # a coarse grid is enough for the bounds


def prepare_unit(open_frames: OpenFrames, src: Path, unit: str, out: Path, settings: PrepareSettings) -> dict:
    stats = SkipStats()
    scene, frames = open_frames(src, unit, settings.frame_skip, stats)
    hw = (settings.image_height, settings.image_width)
    records: list[dict] = []
    try:
        for frame in frames:
            frame.scene = scene
            p = build_pairs(frame, hw, settings.voxel_size, settings.corr_depth_tol)
            rel = f"{scene}/{frame.index:06d}.npz"
            save_pairs(out / rel, p)
            records.append({"file": rel, "frame": frame.index, "voxels": len(p.coords), "pairs": p.num_pairs})
    except UserError:
        for r in records:  # a bad unit leaves nothing in the cache
            (out / r["file"]).unlink(missing_ok=True)
        raise
    return {
        "files": [r["file"] for r in records],
        "frames": records,
        **stats.to_dict(),
        "skip_examples": stats.examples,
    }


def inspect_unit(open_frames: OpenFrames, src: Path, unit: str, settings: PrepareSettings) -> dict:
    stats = SkipStats()
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for f in open_frames(src, unit, settings.frame_skip, stats)[1]:
        _, depth, K = resize_frame(f, INSPECT_HW)
        xyz = backproject(depth, K, f.pose)[0]
        if len(xyz):
            lo, hi = np.minimum(lo, xyz.min(0)), np.maximum(hi, xyz.max(0))
    return {
        **stats.to_dict(),
        "skip_examples": stats.examples,
        "num_points": 0,
        "classes": {},
        "num_instances": 0,
        "num_boxes": 0,
        "bounds": {"min": lo.tolist(), "max": hi.tolist()},
    }


def totals(entries: list[dict]) -> dict:
    skipped: dict[str, int] = {}
    for e in entries:
        for k, v in e["skipped"].items():
            skipped[k] = skipped.get(k, 0) + v
    frames = [f for e in entries for f in e["frames"]]
    return {
        "num_frames": sum(e["num_frames"] for e in entries),
        "selected_frames": len(frames),
        "skipped": skipped,
        "pairs": int(sum(f["pairs"] for f in frames)),
    }
