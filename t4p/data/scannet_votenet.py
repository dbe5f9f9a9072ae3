"""ScanNet in the VoteNet export layout (``scannet_train_detection_data/``), and the detection scene cache.

Per scene: ``<scene>_vert.npy`` (N, 6) xyz + rgb 0-255, ``<scene>_sem_label.npy`` (N,) NYU40
ids, ``<scene>_ins_label.npy`` (N,) instance ids, ``<scene>_bbox.npy`` (K, 7) axis-aligned
boxes: centre xyz, full size xyz, NYU40 id. NYU40 ids map to the 18 benchmark classes
(``SCANNET18``); points and boxes of other ids are ignored (-100 / dropped), as VoteNet does.

Read-time checks: finite points and colours in 0..255, at least one point, NYU40 ids that are
integers in 0..40 (a -5 or 3.7 is an error, not a class), boxes with finite centres and positive
sizes (a box of a dropped class may be flat, as the export's floors are). Each error names the file
and the row.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t4p.data.checks import (
    require_boxes,
    require_finite,
    require_ids,
    require_points,
    require_range,
)
from t4p.data.classes import SCANNET18
from t4p.data.format_api import PrepareSettings
from t4p.errors import UserError
from t4p.io import save_npz

NYU40_TO_18 = {nyu: i for i, nyu in enumerate(SCANNET18.nyu40_ids)}
NYU40_MAX = 40
POINT = "point x y z r g b"
BOX = "box cx cy cz dx dy dz nyu40_id"


class VoteNetFormatError(UserError, ValueError):
    """A VoteNet export file is missing, has the wrong shape or holds values out of range (file and row named)."""


@dataclass
class DetScene:
    scene_id: str
    xyz: np.ndarray  # (N, 3) float32
    rgb: np.ndarray  # (N, 3) uint8
    labels: np.ndarray  # (N,) int64 benchmark class (-100 = other)
    instances: np.ndarray  # (N,) int64 (-1 = none)
    boxes: np.ndarray  # (K, 8) float32 centre xyz, full size xyz, heading, class


def load_array(path: Path, err: type[Exception], what: str, key: str | None = None) -> np.ndarray:
    """``np.load`` of a ``.npy`` (or ``key`` of a ``.npz``); a missing or unreadable file is ``err`` naming it."""
    if not path.exists():
        raise err(f"{path}: missing ({what})")
    try:
        if key is None:
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            return z[key]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise err(f"{path}: not a readable numpy file ({e}); expected {what}") from None


def _load(path: Path, ndim: int, cols: int | None, what: str) -> np.ndarray:
    arr = load_array(path, VoteNetFormatError, what)
    if arr.ndim != ndim or (cols is not None and arr.shape[1] != cols):
        want = f"(N, {cols})" if cols is not None else "(N,)"
        if arr.ndim == 2 and arr.shape[0] == 0:
            return arr.reshape(0, cols or 0)
        raise VoteNetFormatError(f"{path}: expected {what} of shape {want}, got {arr.shape}")
    return arr


def map_nyu40(ids: np.ndarray) -> np.ndarray:
    """NYU40 ids (int, already checked to lie in 0..40) -> benchmark class (-100 = not a benchmark class)."""
    lut = np.full(NYU40_MAX + 1, -100, dtype=np.int64)
    for nyu, c in NYU40_TO_18.items():
        lut[nyu] = c
    return lut[ids]


def checked_points(path: Path, arr: np.ndarray, err: type[Exception]) -> tuple[np.ndarray, np.ndarray]:
    """(xyz float32, rgb uint8) of (N, 6) points after the checks: non-empty, finite, colours in 0..255."""
    require_points(len(arr), path, err)
    require_finite(arr, path, POINT, err)
    require_range(arr[:, 3:6], 0, 255, path, "colour r g b", err)
    return arr[:, :3].astype(np.float32), arr[:, 3:6].astype(np.uint8)


def list_scenes(root: str | Path) -> list[str]:
    root = Path(root)
    scenes = sorted(p.name[: -len("_vert.npy")] for p in root.glob("*_vert.npy"))
    if not scenes:
        raise VoteNetFormatError(f"{root}: no <scene>_vert.npy files (expected the VoteNet ScanNet export)")
    return scenes


def _files(root: Path, scene: str) -> dict[str, Path]:
    return {k: root / f"{scene}_{k}.npy" for k in ("vert", "sem_label", "ins_label", "bbox")}


def read_scene(root: str | Path, scene: str) -> DetScene:
    paths = _files(Path(root), scene)
    vert = _load(paths["vert"], 2, 6, "points x y z r g b")
    xyz, rgb = checked_points(paths["vert"], vert, VoteNetFormatError)
    sem = _load(paths["sem_label"], 1, None, "per-point NYU40 ids")
    ins = _load(paths["ins_label"], 1, None, "per-point instance ids")
    for arr, name in ((sem, "sem_label"), (ins, "ins_label")):
        if len(arr) != len(vert):
            raise VoteNetFormatError(f"{paths[name]}: {len(arr)} values, expected {len(vert)} (one per point)")
    sem = require_ids(sem, paths["sem_label"], "NYU40 id", VoteNetFormatError, 0, NYU40_MAX)
    ins = require_ids(ins, paths["ins_label"], "instance id", VoteNetFormatError)
    bbox = _load(paths["bbox"], 2, 7, "boxes cx cy cz dx dy dz nyu40_id")
    require_finite(bbox, paths["bbox"], BOX, VoteNetFormatError)
    cls = map_nyu40(require_ids(bbox[:, 6], paths["bbox"], "box NYU40 id", VoteNetFormatError, 0, NYU40_MAX))
    keep = cls >= 0  # boxes of other classes are dropped: those may be flat (a floor), never negative
    require_boxes(bbox, paths["bbox"], BOX, VoteNetFormatError, kept=keep)
    boxes = np.zeros((int(keep.sum()), 8), dtype=np.float32)
    boxes[:, :6] = bbox[keep, :6]
    boxes[:, 7] = cls[keep]
    return DetScene(scene, xyz, rgb, map_nyu40(sem), np.where(ins > 0, ins, -1).astype(np.int64), boxes)


# --------------------------------------------------------------------------- detection cache (shared with sunrgbd)


def save_scene(out: Path, unit: str, sc: DetScene) -> dict:
    """Write one scene as ``<unit>.npz``; its manifest entry."""
    rel = f"{unit}.npz"
    save_npz(out / rel, xyz=sc.xyz, rgb=sc.rgb, labels=sc.labels, instances=sc.instances, boxes=sc.boxes)
    return {"files": [rel], "points": len(sc.xyz), "boxes": len(sc.boxes)}


def summarise_scene(sc: DetScene, names: tuple[str, ...], num_instances: int) -> dict:
    """One scene's part of ``t4p data inspect``."""
    counts = np.bincount(sc.boxes[:, 7].astype(np.int64), minlength=len(names))
    return {
        "num_points": len(sc.xyz),
        "classes": {c: int(k) for c, k in zip(names, counts, strict=True) if k},
        "num_instances": num_instances,
        "num_boxes": len(sc.boxes),
        "bounds": {"min": sc.xyz.min(0).tolist(), "max": sc.xyz.max(0).tolist()},
    }


def det_totals(entries: list[dict]) -> dict:
    return {"points": int(sum(e["points"] for e in entries)), "boxes": int(sum(e["boxes"] for e in entries))}


# --------------------------------------------------------------------------- format hooks (t4p.data.formats)


def units(src: Path, settings: PrepareSettings) -> list[str]:
    return list_scenes(src)


def sources(src: Path, unit: str, settings: PrepareSettings) -> list[Path]:
    return [p for p in _files(src, unit).values() if p.exists()]


def prepare_unit(src: Path, unit: str, out: Path, settings: PrepareSettings) -> dict:
    return save_scene(out, unit, read_scene(src, unit))


def inspect_unit(src: Path, unit: str, settings: PrepareSettings) -> dict:
    sc = read_scene(src, unit)
    return summarise_scene(sc, SCANNET18.names, len(np.unique(sc.instances[sc.instances >= 0])))


totals = det_totals
