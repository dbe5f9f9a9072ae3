"""ScanNet in the VoteNet export layout (``scannet_train_detection_data/``).

Per scene: ``<scene>_vert.npy`` (N, 6) xyz + rgb 0-255, ``<scene>_sem_label.npy`` (N,) NYU40
ids, ``<scene>_ins_label.npy`` (N,) instance ids, ``<scene>_bbox.npy`` (K, 7) axis-aligned
boxes: centre xyz, full size xyz, NYU40 id. NYU40 ids map to the 18 benchmark classes
(``SCANNET18``); points and boxes of other ids are ignored (-100 / dropped), as VoteNet does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t4p.data.classes import SCANNET18

NYU40_TO_18 = {nyu: i for i, nyu in enumerate(SCANNET18.nyu40_ids)}


class VoteNetFormatError(ValueError):
    """A VoteNet export file has the wrong shape or is missing."""


@dataclass
class DetScene:
    scene_id: str
    xyz: np.ndarray  # (N, 3) float32
    rgb: np.ndarray  # (N, 3) uint8
    labels: np.ndarray  # (N,) int64 benchmark class (-100 = other)
    instances: np.ndarray  # (N,) int64 (-1 = none)
    boxes: np.ndarray  # (K, 8) float32 centre xyz, full size xyz, heading, class


def _load(path: Path, ndim: int, cols: int | None, what: str) -> np.ndarray:
    if not path.exists():
        raise VoteNetFormatError(f"{path}: missing ({what})")
    arr = np.load(path)
    if arr.ndim != ndim or (cols is not None and arr.shape[1] != cols):
        want = f"(N, {cols})" if cols is not None else "(N,)"
        if arr.ndim == 2 and arr.shape[0] == 0:
            return arr.reshape(0, cols or 0)
        raise VoteNetFormatError(f"{path}: expected {what} of shape {want}, got {arr.shape}")
    return arr


def map_nyu40(ids: np.ndarray) -> np.ndarray:
    lut = np.full(max(41, int(ids.max(initial=0)) + 1), -100, dtype=np.int64)
    for nyu, c in NYU40_TO_18.items():
        lut[nyu] = c
    return lut[ids.astype(np.int64)]


def list_scenes(root: str | Path) -> list[str]:
    root = Path(root)
    scenes = sorted(p.name[: -len("_vert.npy")] for p in root.glob("*_vert.npy"))
    if not scenes:
        raise VoteNetFormatError(f"{root}: no <scene>_vert.npy files (expected the VoteNet ScanNet export)")
    return scenes


def read_scene(root: str | Path, scene: str) -> DetScene:
    root = Path(root)
    vert = _load(root / f"{scene}_vert.npy", 2, 6, "points x y z r g b")
    n = len(vert)
    sem = _load(root / f"{scene}_sem_label.npy", 1, None, "per-point NYU40 ids")
    ins = _load(root / f"{scene}_ins_label.npy", 1, None, "per-point instance ids")
    for arr, name in ((sem, "sem_label"), (ins, "ins_label")):
        if len(arr) != n:
            raise VoteNetFormatError(
                f"{root / f'{scene}_{name}.npy'}: {len(arr)} values, expected {n} (one per point)"
            )
    bbox = _load(root / f"{scene}_bbox.npy", 2, 7, "boxes cx cy cz dx dy dz nyu40_id")
    cls = map_nyu40(bbox[:, 6]) if len(bbox) else np.zeros(0, dtype=np.int64)
    keep = cls >= 0
    boxes = np.zeros((int(keep.sum()), 8), dtype=np.float32)
    boxes[:, :6] = bbox[keep, :6]
    boxes[:, 7] = cls[keep]
    return DetScene(
        scene,
        vert[:, :3].astype(np.float32),
        np.clip(vert[:, 3:6], 0, 255).astype(np.uint8),
        map_nyu40(sem),
        np.where(ins > 0, ins, -1).astype(np.int64),
        boxes,
    )
