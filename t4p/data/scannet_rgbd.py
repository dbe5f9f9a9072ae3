"""ScanNet RGB-D frames in the exported folder layout, and the frame and camera checks shared with `.sens`.

Layout of one scene (what ScanNet's ``SensReader`` export writes)::

    <scene>/color/<N>.jpg                 colour, any resolution
    <scene>/depth/<N>.png                 uint16 depth in millimetres (0 = invalid)
    <scene>/pose/<N>.txt                  4x4 camera-to-world, metres
    <scene>/intrinsic/intrinsic_color.txt 4x4 (K in the top-left 3x3)
    <scene>/intrinsic/intrinsic_depth.txt 4x4

Frames are selected by index (``N % frame_skip == 0``); frames whose pose is non-finite
(ScanNet has ``-inf`` poses), whose depth has no valid pixel, or whose files are missing are
skipped and counted by reason in a ``SkipStats``.

Each camera must fit its image: positive focal lengths and the principal point near the image centre
(within 15% of the width and height; an image resized without its intrinsics is far from it).
Depth is back-projected with the depth intrinsics; when ``intrinsic_depth.txt`` is missing they are
derived only for ScanNet's own export pair (1296x968 colour, 640x480 depth: the colour intrinsics
scaled), otherwise that is an error, as is a depth image of another size than the colour image
described by the colour intrinsics. An image that does not decode is an error naming its file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from t4p.data.checks import RepeatedWarnings, SourceNotFoundError
from t4p.data.format_api import PrepareSettings
from t4p.errors import UserError

log = logging.getLogger(__name__)

DEPTH_INVALID_MM = (0, 65535)  # 0 = no measurement; 65535 = saturated (7-Scenes, some sensors)
SCANNET_COLOR_HW = (968, 1296)  # ScanNet's export: colour (h, w) ...
SCANNET_DEPTH_HW = (480, 640)  # ... and depth, whose intrinsics are the colour ones scaled
CENTRE_TOLERANCE = 0.15  # how far (a fraction of the image size) a principal point may lie from the image centre


class RGBDFormatError(UserError, ValueError):
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
    warnings: RepeatedWarnings = field(default_factory=lambda: RepeatedWarnings(log), repr=False, compare=False)

    def skip(self, reason: str, where: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < 5:
            examples.append(where)
        what = reason.replace("_", " ")
        self.warnings.warn(f"frames skipped for {what}", "skipping frame %s: %s", where, what)

    def summarise(self, where: str) -> None:
        """Log one line for the skipped frames not logged one by one."""
        self.warnings.flush(where)

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


# --------------------------------------------------------------------------- cameras


def scale_intrinsics(K: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """K for an image resized from src (h, w) to dst (h, w); pixel centres at integer coordinates."""
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    out = K.astype(np.float64).copy()
    out[0, 0] *= sx
    out[1, 1] *= sy
    out[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return out


def _wh(hw: tuple[int, ...]) -> str:
    return f"{hw[1]}x{hw[0]}"


def check_intrinsics(K: np.ndarray, hw: tuple[int, int], k_name: str, image: str, err: type[Exception]) -> None:
    """``K`` describes an image of ``hw``: positive finite focal lengths, principal point near the image centre.

    Near: within ``CENTRE_TOLERANCE`` of the width (height) of ``((w - 1) / 2, (h - 1) / 2)``. Real cameras are
    well inside that; an image resized without its intrinsics (depth halved to 320x240 while the matrix still
    says cx 319.5) is far outside it, and would be back-projected into wrong geometry.
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not (np.isfinite([fx, fy]).all() and fx > 0 and fy > 0):
        raise err(f"{k_name}: focal lengths ({fx:g}, {fy:g}); expected positive numbers (pixels of {image})")
    h, w = hw
    if not (abs(cx - (w - 1) / 2) <= CENTRE_TOLERANCE * w and abs(cy - (h - 1) / 2) <= CENTRE_TOLERANCE * h):
        raise err(
            f"{k_name}: principal point ({cx:g}, {cy:g}) is not near the centre ({(w - 1) / 2:g}, {(h - 1) / 2:g}) "
            f"of the {_wh(hw)} {image}; expected the intrinsics of that image (|cx - (w-1)/2| <= "
            f"{CENTRE_TOLERANCE:g} w, |cy - (h-1)/2| <= {CENTRE_TOLERANCE:g} h): was the image resized without "
            "scaling its intrinsics?"
        )


def frame_cameras(
    k_color: np.ndarray,
    k_depth: np.ndarray | None,
    color_hw: tuple[int, int],
    depth_hw: tuple[int, int],
    names: tuple[str, str, str, str],
    err: type[Exception],
) -> np.ndarray:
    """The depth intrinsics of a frame, after checking that both cameras fit their images.

    ``names``: where the colour intrinsics, the depth intrinsics, the colour and the depth image come from.
    ``k_depth=None`` (no depth intrinsics) is scaled from the colour intrinsics for ScanNet's export pair only.
    """
    kc_name, kd_name, color_name, depth_name = names
    check_intrinsics(k_color, color_hw, kc_name, f"colour image {color_name}", err)
    if k_depth is None:
        if (color_hw, depth_hw) != (SCANNET_COLOR_HW, SCANNET_DEPTH_HW):
            raise err(
                f"{kd_name}: missing; expected the 4x4 depth intrinsic matrix (the colour intrinsics are scaled only "
                f"for ScanNet's export pair, 1296x968 colour with 640x480 depth; here colour {_wh(color_hw)} "
                f"{color_name}, depth {_wh(depth_hw)} {depth_name})"
            )
        k_depth = scale_intrinsics(k_color, color_hw, depth_hw)
    elif color_hw != depth_hw and np.allclose(k_depth, k_color):
        raise err(
            f"{depth_name}: depth is {_wh(depth_hw)} but colour {color_name} is {_wh(color_hw)}, and {kd_name} holds "
            "the colour intrinsics; expected the intrinsics of the depth image"
        )
    check_intrinsics(k_depth, depth_hw, kd_name, f"depth image {depth_name}", err)
    return k_depth


# --------------------------------------------------------------------------- files


def read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A whitespace-separated text matrix of exactly ``shape`` (inf/nan allowed)."""
    try:
        m = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise RGBDFormatError(f"{path}: expected a {shape[0]}x{shape[1]} matrix of numbers ({err})") from None
    if m.shape != shape:
        raise RGBDFormatError(f"{path}: expected a {shape[0]}x{shape[1]} matrix, got shape {m.shape}")
    return m


def _image(path: Path, expected: str) -> Image.Image:
    """The decoded image at ``path`` (an error naming the file when it does not decode)."""
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except (OSError, SyntaxError, ValueError) as err:  # PIL: UnidentifiedImageError, truncated data, bad chunks
        raise RGBDFormatError(f"{path}: not a readable image ({err}); expected {expected}") from None


def read_depth_png(path: Path, depth_shift: float = 1000.0) -> np.ndarray:
    arr = np.array(_image(path, "a 16-bit single-channel PNG (mm)"))
    if arr.ndim != 2 or arr.dtype not in (np.uint16, np.int32):
        raise RGBDFormatError(
            f"{path}: expected a 16-bit single-channel PNG (mm), got {arr.dtype} {arr.shape}"
        )
    return depth_mm_to_m(arr.astype(np.uint16), depth_shift)


def read_color(path: Path) -> np.ndarray:
    return np.array(_image(path, "a JPEG colour image").convert("RGB"))  # (H, W, 3) uint8


def read_intrinsics(scene_dir: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(K_color, K_depth or None) 3x3 from ``intrinsic/intrinsic_{color,depth}.txt``."""
    idir = scene_dir / "intrinsic"
    kc_path = idir / "intrinsic_color.txt"
    if not kc_path.exists():
        raise RGBDFormatError(f"{kc_path}: missing (expected the 4x4 colour intrinsic matrix)")
    kc = read_matrix(kc_path, (4, 4))[:3, :3]
    kd_path = idir / "intrinsic_depth.txt"
    return kc, read_matrix(kd_path, (4, 4))[:3, :3] if kd_path.exists() else None


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


def _frame_paths(scene_dir: Path, i: int) -> dict[str, Path]:
    return {
        "color": scene_dir / "color" / f"{i}.jpg",
        "depth": scene_dir / "depth" / f"{i}.png",
        "pose": scene_dir / "pose" / f"{i}.txt",
    }


def read_exported_scene(
    scene_dir: str | Path, frame_skip: int = 25, stats: SkipStats | None = None
) -> Iterator[RGBDFrame]:
    """Yield the usable selected frames of one exported scene; skipped frames go into ``stats``."""
    scene_dir = Path(scene_dir)
    stats = stats if stats is not None else SkipStats()
    k_color, k_depth = read_intrinsics(scene_dir)
    kc_name, kd_name = (str(scene_dir / "intrinsic" / f"intrinsic_{c}.txt") for c in ("color", "depth"))
    for i in list_frame_indices(scene_dir):
        stats.num_frames += 1
        if i % frame_skip:
            continue
        where = f"{scene_dir.name}/{i}"
        paths = _frame_paths(scene_dir, i)
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
        color = read_color(paths["color"])
        names = (kc_name, kd_name, str(paths["color"]), str(paths["depth"]))
        kd = frame_cameras(k_color, k_depth, color.shape[:2], depth.shape, names, RGBDFormatError)
        stats.selected += 1
        yield RGBDFrame(scene_dir.name, i, color, depth, pose, k_color, kd)
    stats.summarise(str(scene_dir))


def count_frames(scene_dir: str | Path) -> int:
    return len(list_frame_indices(Path(scene_dir)))


# --------------------------------------------------------------------------- format hooks (t4p.data.formats)


def scene_dir_of(src: Path, unit: str) -> Path:
    return src if unit == "." else src / unit


def units(src: Path, settings: PrepareSettings) -> list[str]:
    """"." for one scene folder, else the scene folders under ``src`` (or ``src/scans``)."""
    if is_exported_scene(src):
        return ["."]
    base = src / "scans" if (src / "scans").is_dir() else src
    scenes = sorted(p.relative_to(src).as_posix() for p in base.iterdir() if is_exported_scene(p))
    if not scenes:
        raise SourceNotFoundError(f"{src}: no scene folders with color/ depth/ pose/ found")
    return scenes


def sources(src: Path, unit: str, settings: PrepareSettings) -> list[Path]:
    """The intrinsics, the frame folders (their listing counts frames) and the selected frames' files."""
    d = scene_dir_of(src, unit)
    files = [d / "intrinsic" / n for n in ("intrinsic_color.txt", "intrinsic_depth.txt")]
    files += [d / sub for sub in ("color", "depth", "pose")]
    for i in list_frame_indices(d):
        if i % settings.frame_skip == 0:
            files += _frame_paths(d, i).values()
    return [p for p in files if p.exists()]


def open_frames(src: Path, unit: str, frame_skip: int, stats: SkipStats) -> tuple[str, Iterator[RGBDFrame]]:
    """(scene name, its frames) of one unit."""
    d = scene_dir_of(src, unit)
    return d.name, read_exported_scene(d, frame_skip, stats)
