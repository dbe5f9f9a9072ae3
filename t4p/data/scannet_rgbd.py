"""ScanNet RGB-D frames in the exported folder layout, and the frame checks shared with `.sens`.

Layout of one scene (what ScanNet's ``SensReader`` export writes)::

    <scene>/color/<N>.jpg                 colour, any resolution
    <scene>/depth/<N>.png                 uint16 depth in millimetres (0 = invalid)
    <scene>/pose/<N>.txt                  4x4 camera-to-world, metres
    <scene>/intrinsic/intrinsic_color.txt 4x4 (K in the top-left 3x3)
    <scene>/intrinsic/intrinsic_depth.txt 4x4

Frames are selected by index (``N % frame_skip == 0``); frames whose pose is non-finite
(ScanNet has ``-inf`` poses), whose depth has no valid pixel, or whose files are missing are
skipped and counted by reason in a ``SkipStats``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

DEPTH_INVALID_MM = (0, 65535)  # 0 = no measurement; 65535 = saturated (7-Scenes, some sensors)


class RGBDFormatError(ValueError):
    """A file of an RGB-D scene is malformed (the message names the file and what was expected)."""


@dataclass
class RGBDFrame:
    scene: str
    index: int
    color: np.ndarray  # (Hc, Wc, 3) uint8
    depth: np.ndarray  # (Hd, Wd) float32 metres, 0 = invalid
    pose: np.ndarray  # (4, 4) float64 camera-to-world
    K_color: np.ndarray  # (3, 3) float64
    K_depth: np.ndarray  # (3, 3) float64

    @property
    def frame_id(self) -> str:
        return f"{self.scene}/{self.index:06d}"


@dataclass
class SkipStats:
    """Frames seen, selected and skipped (by reason), with a few examples per reason."""

    num_frames: int = 0
    selected: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 5:
            ex.append(where)
        log.warning("skipping frame %s: %s", where, reason.replace("_", " "))


    def to_dict(self) -> dict:
        return {"num_frames": self.num_frames, "selected_frames": self.selected, "skipped": dict(self.counts)}


def frame_problem(pose: np.ndarray, depth: np.ndarray) -> str | None:
    """The reason to skip a frame, or None when it is usable."""
    if not np.isfinite(pose).all():
        return "nonfinite_pose"
    if not (depth > 0).any():
        return "empty_depth"
    return None


def depth_mm_to_m(depth_mm: np.ndarray, depth_shift: float = 1000.0) -> np.ndarray:
    """uint16 depth -> float32 metres with the invalid codes set to 0."""
    d = depth_mm.astype(np.float32) / depth_shift
    d[np.isin(depth_mm, DEPTH_INVALID_MM)] = 0.0
    return d


def read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A whitespace-separated text matrix of exactly ``shape`` (inf/nan allowed)."""
    try:
        m = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise RGBDFormatError(f"{path}: expected a {shape[0]}x{shape[1]} matrix of numbers ({err})") from None
    if m.shape != shape:
        raise RGBDFormatError(f"{path}: expected a {shape[0]}x{shape[1]} matrix, got shape {m.shape}")
    return m


def read_depth_png(path: Path, depth_shift: float = 1000.0) -> np.ndarray:
    with Image.open(path) as im:
        arr = np.array(im)
    if arr.ndim != 2 or arr.dtype not in (np.uint16, np.int32):
        raise RGBDFormatError(
            f"{path}: expected a 16-bit single-channel PNG (mm), got {arr.dtype} {arr.shape}"
        )
    return depth_mm_to_m(arr.astype(np.uint16), depth_shift)


def read_color(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))  # (H, W, 3) uint8


def read_intrinsics(scene_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(K_color, K_depth) 3x3 from ``intrinsic/intrinsic_{color,depth}.txt`` (depth falls back to colour)."""
    idir = scene_dir / "intrinsic"
    kc_path = idir / "intrinsic_color.txt"
    if not kc_path.exists():
        raise RGBDFormatError(f"{kc_path}: missing (expected the 4x4 colour intrinsic matrix)")
    kc = read_matrix(kc_path, (4, 4))[:3, :3]
    kd_path = idir / "intrinsic_depth.txt"
    kd = read_matrix(kd_path, (4, 4))[:3, :3] if kd_path.exists() else kc.copy()
    return kc, kd


def list_frame_indices(scene_dir: Path) -> list[int]:
    """Indices of all frames that have at least one of colour/depth/pose."""
    idx: set[int] = set()
    for sub, ext in (("color", ".jpg"), ("depth", ".png"), ("pose", ".txt")):
        for p in (scene_dir / sub).glob("*" + ext):
            if p.stem.isdigit():
                idx.add(int(p.stem))
    return sorted(idx)


def is_exported_scene(path: Path) -> bool:
    return (path / "color").is_dir() and (path / "depth").is_dir() and (path / "pose").is_dir()


def read_exported_scene(
    scene_dir: str | Path, frame_skip: int = 25, stats: SkipStats | None = None
) -> Iterator[RGBDFrame]:
    """Yield the usable selected frames of one exported scene; skipped frames go into ``stats``."""
    scene_dir = Path(scene_dir)
    stats = stats if stats is not None else SkipStats()
    k_color, k_depth = read_intrinsics(scene_dir)
    for i in list_frame_indices(scene_dir):
        stats.num_frames += 1
        if i % frame_skip:
            continue
        where = f"{scene_dir.name}/{i}"
        paths = {
            "color": scene_dir / "color" / f"{i}.jpg",
            "depth": scene_dir / "depth" / f"{i}.png",
            "pose": scene_dir / "pose" / f"{i}.txt",
        }
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            stats.skip("missing_file", f"{where} ({', '.join(missing)})")
            continue
        pose = read_matrix(paths["pose"], (4, 4))
        depth = read_depth_png(paths["depth"])
        problem = frame_problem(pose, depth)
        if problem:
            stats.skip(problem, where)
            continue
        stats.selected += 1
        yield RGBDFrame(scene_dir.name, i, read_color(paths["color"]), depth, pose, k_color, k_depth)
