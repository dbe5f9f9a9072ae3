"""SUN RGB-D for detection: the ``sunrgbd_trainval/`` layout and VoteNet's prepared files.

``sunrgbd_trainval/``: ``calib/<id>.txt`` (Rtilt and K, 9 numbers each, column-major),
``image/<id>.jpg``, ``label_v1/<id>.txt`` or ``label/<id>.txt`` (v2), and points from
``lidar/<id>.npz`` (key ``pc``, N x 6: upright-depth xyz in metres, rgb in [0, 1]) or the full
``depth/<id>.mat`` (key ``instance``). A label line is
``name xmin ymin w h cx cy cz hw hl hh ox oy`` (half sizes; (ox, oy) is the length axis); only
the 10 benchmark classes are kept (VoteNet drops the others). The dropped boxes are counted by class
name in each unit's manifest entry (``dropped_boxes``; ``totals.dropped_boxes`` sums them) and warned
about once per scene (summarised after the first few), so a misspelt name is seen, not lost.

VoteNet-prepared files: ``<id>_pc.npz`` (key ``pc``, N x 6) and ``<id>_bbox.npy`` (K, 8): centre,
half sizes (l, w, h), heading in VoteNet's sign (``-atan2(oy, ox)``), class index.

Boxes come out as t4p's (K, 8): centre, full sizes (l, w, h), heading h with the length axis
along (cos h, sin h) (counter-clockwise about +z, see ``t4p.models.box_ops``), class.

Read-time checks: finite points with colours in range, at least one point, label numbers that parse
and are finite, positive box sizes, class indices that are integers in 0..9, a ``.mat`` that reads
and holds ``instance``; each error names the file and the line (labels), row (arrays) or key.
"""

from __future__ import annotations

import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from t4p.data.checks import require_boxes, require_finite, require_ids
from t4p.data.classes import SUNRGBD10
from t4p.data.format_api import PrepareSettings
from t4p.data.scannet_votenet import DetScene, checked_points, det_totals, load_array, save_scene, summarise_scene
from t4p.errors import UserError

LABEL_FIELDS = "'name xmin ymin w h cx cy cz hw hl hh ox oy'"
DROPPED_WARNING = "scenes with boxes of classes outside sunrgbd10 (dropped, counted as dropped_boxes)"


class SUNRGBDFormatError(UserError, ValueError):
    """A SUN RGB-D file is malformed (the message names file and line)."""


def read_calib(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(Rtilt (3, 3), K (3, 3)) from a calib file (each line 9 numbers, column-major)."""
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) < 2 or any(len(ln) != 9 for ln in lines[:2]):
        raise SUNRGBDFormatError(f"{path}: expected 2 lines of 9 numbers (Rtilt, K)")
    rt, k = (np.array(ln, dtype=np.float64).reshape(3, 3, order="F") for ln in lines[:2])
    return rt, k


def _label_numbers(path: Path, lineno: int, parts: list[str]) -> list[float]:
    """The 12 numbers of a label line: they parse, are finite, and the half sizes are positive."""
    try:
        values = [float(p) for p in parts[1:13]]
    except ValueError:
        raise SUNRGBDFormatError(f"{path}:{lineno}: {' '.join(parts)!r}: expected numbers after the name in "
                                 f"{LABEL_FIELDS}") from None
    if not np.isfinite(values).all():
        raise SUNRGBDFormatError(f"{path}:{lineno}: {' '.join(parts)!r}: a value is not finite; expected finite "
                                 f"numbers in {LABEL_FIELDS}")
    if min(values[7:10]) <= 0:
        raise SUNRGBDFormatError(f"{path}:{lineno}: half sizes hw hl hh {' '.join(parts[8:11])}; expected positive "
                                 "sizes")
    return values


def read_label(path: Path) -> tuple[np.ndarray, dict[str, int]]:
    """Boxes (K, 8): centre, full size (2hl, 2hw, 2hh), heading, class; and the boxes of other classes
    (dropped), counted by name."""
    if not path.exists():
        raise SUNRGBDFormatError(f"{path}: missing (expected the scene's label file)")
    boxes: list[list[float]] = []
    dropped: Counter[str] = Counter()
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 13:
            raise SUNRGBDFormatError(f"{path}:{lineno}: expected 13 fields {LABEL_FIELDS}, got {len(parts)}")
        name = parts[0]
        if name not in SUNRGBD10.names:
            dropped[name] += 1
            continue
        cx, cy, cz, hw, hl, hh, ox, oy = _label_numbers(path, lineno, parts)[4:12]
        heading = np.arctan2(oy, ox)  # t4p: length axis (cos h, sin h); VoteNet stores -atan2(oy, ox)
        boxes.append([cx, cy, cz, 2 * hl, 2 * hw, 2 * hh, heading, SUNRGBD10.index(name)])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 8), dict(dropped)


def read_mat_points(mat: Path) -> np.ndarray:
    """The points under key ``instance`` of a raw ``depth/<id>.mat`` (a file that does not read, or lacks the
    key, is an error naming it)."""
    from scipy.io import loadmat  # only for the raw .mat layout (the VoteNet export is .npz)
    from scipy.io.matlab import MatReadError

    expected = "expected a MATLAB file holding the scene's points (N, 6) under key 'instance'"
    try:
        contents = loadmat(mat)
    except (OSError, ValueError, MatReadError, NotImplementedError, zlib.error) as err:  # bad header, cut short, v7.3
        raise SUNRGBDFormatError(f"{mat}: not a readable MATLAB file ({err}); {expected}") from None
    if "instance" not in contents:
        keys = [k for k in contents if not k.startswith("__")]
        raise SUNRGBDFormatError(f"{mat}: no key 'instance' (found {', '.join(map(repr, keys)) or 'none'}); {expected}")
    return np.asarray(contents["instance"])


def read_points(root: Path, idx: str) -> tuple[np.ndarray, Path]:
    """((N, 6) xyz + rgb in [0, 1], the file) from ``lidar/<id>.npz`` or ``depth/<id>.mat``."""
    npz = root / "lidar" / f"{idx}.npz"
    if npz.exists():
        pc = load_array(npz, SUNRGBDFormatError, "points under key 'pc'", key="pc")
    else:
        mat = root / "depth" / f"{idx}.mat"
        if not mat.exists():
            raise SUNRGBDFormatError(f"{npz} and {mat}: neither exists (expected the scene's points)")
        pc = read_mat_points(mat)
        npz = mat
    if pc.ndim != 2 or pc.shape[1] != 6 or pc.dtype.kind not in "iuf":
        raise SUNRGBDFormatError(f"{npz}: expected numeric points of shape (N, 6), got {pc.dtype} {pc.shape}")
    return pc, npz


def is_trainval(root: Path) -> bool:
    return (root / "calib").is_dir() or (root / "sunrgbd_trainval").is_dir()


def trainval_root(root: str | Path) -> Path:
    root = Path(root)
    return root / "sunrgbd_trainval" if (root / "sunrgbd_trainval").is_dir() else root


def list_scenes(root: str | Path, label_version: str = "v1") -> list[str]:
    root = Path(root)
    if is_trainval(root):
        t = trainval_root(root)
        return sorted(p.stem for p in (t / label_dir(label_version)).glob("*.txt"))
    scenes = sorted(p.name[: -len("_pc.npz")] for p in root.glob("*_pc.npz"))
    if not scenes:
        raise SUNRGBDFormatError(f"{root}: neither sunrgbd_trainval/ nor <id>_pc.npz files found")
    return scenes


def label_dir(version: str) -> str:
    return "label_v1" if version == "v1" else "label"


def read_votenet_boxes(path: Path) -> np.ndarray:
    """VoteNet's ``<id>_bbox.npy`` (K, 8) with half sizes and its heading sign -> t4p's boxes."""
    raw = load_array(path, SUNRGBDFormatError, "(K, 8) boxes 'cx cy cz l w h heading class'")
    if raw.ndim != 2 or raw.shape[1] != 8:
        raise SUNRGBDFormatError(
            f"{path}: expected (K, 8) boxes 'cx cy cz l w h heading class' (half sizes), got {raw.shape}"
        )
    require_boxes(raw, path, "box cx cy cz l w h heading class", SUNRGBDFormatError)
    require_ids(raw[:, 7], path, "box class", SUNRGBDFormatError, 0, len(SUNRGBD10) - 1)
    boxes = raw.astype(np.float32).copy()
    boxes[:, 3:6] *= 2  # VoteNet stores half sizes
    boxes[:, 6] *= -1  # and the heading with the opposite sign (its corners use rotz(-heading))
    return boxes


def read_scene(root: str | Path, idx: str, label_version: str = "v1") -> DetScene:
    return read_scene_and_dropped(root, idx, label_version)[0]


def read_scene_and_dropped(root: str | Path, idx: str, label_version: str = "v1") -> tuple[DetScene, dict[str, int]]:
    """The scene, and the label boxes of classes outside sunrgbd10 it dropped, by name (none for VoteNet's files)."""
    root = Path(root)
    dropped: dict[str, int] = {}
    if is_trainval(root):
        t = trainval_root(root)
        pc, pc_path = read_points(t, idx)
        boxes, dropped = read_label(t / label_dir(label_version) / f"{idx}.txt")
    else:
        pc_path = root / f"{idx}_pc.npz"
        pc = load_array(pc_path, SUNRGBDFormatError, "points under key 'pc'", key="pc")
        if pc.ndim != 2 or pc.shape[1] != 6:
            raise SUNRGBDFormatError(f"{pc_path}: expected points of shape (N, 6), got {pc.shape}")
        boxes = read_votenet_boxes(root / f"{idx}_bbox.npy")
    require_finite(pc, pc_path, "point x y z r g b", SUNRGBDFormatError)
    n = len(pc)
    rgb = pc[:, 3:6]
    rgb = rgb * 255 if rgb.max(initial=0) <= 1.0 else rgb
    xyz, rgb8 = checked_points(pc_path, np.concatenate([pc[:, :3], np.rint(rgb)], 1), SUNRGBDFormatError)
    return DetScene(idx, xyz, rgb8, np.full(n, -100, dtype=np.int64), np.full(n, -1, dtype=np.int64), boxes), dropped


# --------------------------------------------------------------------------- format hooks (t4p.data.formats)


def units(src: Path, settings: PrepareSettings) -> list[str]:
    return list_scenes(src, settings.label_version)


def sources(src: Path, unit: str, settings: PrepareSettings) -> list[Path]:
    if is_trainval(src):
        t = trainval_root(src)
        files = [t / label_dir(settings.label_version) / f"{unit}.txt", t / "lidar" / f"{unit}.npz"]
        files.append(t / "depth" / f"{unit}.mat")
    else:
        files = [src / f"{unit}_pc.npz", src / f"{unit}_bbox.npy"]
    return [p for p in files if p.exists()]


def _dropped_note(src: Path, unit: str, settings: PrepareSettings, dropped: dict[str, int]) -> list[list[str]]:
    """The unit's warning about its dropped boxes (``[kind, message]``, logged by ``prepare``), if it dropped any."""
    if not dropped:
        return []
    label = trainval_root(src) / label_dir(settings.label_version) / f"{unit}.txt"
    names = ", ".join(f"{name} {n}" for name, n in sorted(dropped.items()))
    return [[DROPPED_WARNING, f"{label}: dropped {sum(dropped.values())} boxes of classes outside sunrgbd10 "
                              f"({names})"]]


def prepare_unit(src: Path, unit: str, out: Path, settings: PrepareSettings) -> dict:
    sc, dropped = read_scene_and_dropped(src, unit, settings.label_version)
    return {**save_scene(out, unit, sc), "dropped_boxes": dropped,
            "warnings": _dropped_note(src, unit, settings, dropped)}


def inspect_unit(src: Path, unit: str, settings: PrepareSettings) -> dict:
    sc, dropped = read_scene_and_dropped(src, unit, settings.label_version)
    return {**summarise_scene(sc, SUNRGBD10.names, len(sc.boxes)), "dropped_boxes": dropped}


def totals(entries: list[dict]) -> dict:
    return {**det_totals(entries), "dropped_boxes": sum(sum(e.get("dropped_boxes", {}).values()) for e in entries)}
