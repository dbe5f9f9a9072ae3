"""SUN RGB-D for detection: the ``sunrgbd_trainval/`` layout and VoteNet's prepared files.

``sunrgbd_trainval/``: ``calib/<id>.txt`` (Rtilt and K, 9 numbers each, column-major),
``image/<id>.jpg``, ``label_v1/<id>.txt`` or ``label/<id>.txt`` (v2), and points from
``lidar/<id>.npz`` (key ``pc``, N x 6: upright-depth xyz in metres, rgb in [0, 1]) or the full
``depth/<id>.mat`` (key ``instance``). A label line is
``name xmin ymin w h cx cy cz hw hl hh ox oy`` (half sizes; (ox, oy) is the length axis); only
the 10 benchmark classes are kept (VoteNet drops the others).

VoteNet-prepared files: ``<id>_pc.npz`` (key ``pc``, N x 6) and ``<id>_bbox.npy`` (K, 8): centre,
half sizes (l, w, h), heading in VoteNet's sign (``-atan2(oy, ox)``), class index.

Boxes come out as t4p's (K, 8): centre, full sizes (l, w, h), heading h with the length axis
along (cos h, sin h) (counter-clockwise about +z, see ``t4p.models.box_ops``), class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from t4p.data.classes import SUNRGBD10
from t4p.data.scannet_votenet import DetScene


class SUNRGBDFormatError(ValueError):
    """A SUN RGB-D file is malformed (the message names file and line)."""


def read_calib(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(Rtilt (3, 3), K (3, 3)) from a calib file (each line 9 numbers, column-major)."""
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) < 2 or any(len(ln) != 9 for ln in lines[:2]):
        raise SUNRGBDFormatError(f"{path}: expected 2 lines of 9 numbers (Rtilt, K)")
    rt, k = (np.array(ln, dtype=np.float64).reshape(3, 3, order="F") for ln in lines[:2])
    return rt, k


def read_label(path: Path) -> np.ndarray:
    """Boxes (K, 8): centre, full size (2hl, 2hw, 2hh), heading, class; other classes dropped."""
    boxes = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 13:
            raise SUNRGBDFormatError(
                f"{path}:{lineno}: expected 13 fields 'name xmin ymin w h cx cy cz hw hl hh ox oy', "
                f"got {len(parts)}"
            )
        name = parts[0]
        if name not in SUNRGBD10.names:
            continue
        cx, cy, cz, hw, hl, hh, ox, oy = (float(p) for p in parts[5:13])
        heading = np.arctan2(oy, ox)  # t4p: length axis (cos h, sin h); VoteNet stores -atan2(oy, ox)
        boxes.append([cx, cy, cz, 2 * hl, 2 * hw, 2 * hh, heading, SUNRGBD10.index(name)])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 8)


def read_points(root: Path, idx: str) -> np.ndarray:
    """(N, 6) xyz + rgb in [0, 1] from ``lidar/<id>.npz`` or ``depth/<id>.mat``."""
    npz = root / "lidar" / f"{idx}.npz"
    if npz.exists():
        with np.load(npz) as z:
            pc = z["pc"]
    else:
        mat = root / "depth" / f"{idx}.mat"
        if not mat.exists():
            raise SUNRGBDFormatError(f"{npz} and {mat}: neither exists (expected the scene's points)")
        from scipy.io import loadmat

        pc = loadmat(mat)["instance"]
        npz = mat
    if pc.ndim != 2 or pc.shape[1] != 6:
        raise SUNRGBDFormatError(f"{npz}: expected points of shape (N, 6), got {pc.shape}")
    return pc


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


def read_scene(root: str | Path, idx: str, label_version: str = "v1") -> DetScene:
    root = Path(root)
    if is_trainval(root):
        t = trainval_root(root)
        pc = read_points(t, idx)
        boxes = read_label(t / label_dir(label_version) / f"{idx}.txt")
    else:
        pc_path, box_path = root / f"{idx}_pc.npz", root / f"{idx}_bbox.npy"
        with np.load(pc_path) as z:
            pc = z["pc"]
        raw = np.load(box_path)
        if raw.ndim != 2 or raw.shape[1] != 8:
            raise SUNRGBDFormatError(
                f"{box_path}: expected (K, 8) boxes 'cx cy cz l w h heading class' (half sizes), "
                f"got {raw.shape}"
            )
        boxes = raw.astype(np.float32).copy()
        boxes[:, 3:6] *= 2  # VoteNet stores half sizes
        boxes[:, 6] *= -1  # and the heading with the opposite sign (its corners use rotz(-heading))
    n = len(pc)
    rgb = pc[:, 3:6]
    rgb = rgb * 255 if rgb.max(initial=0) <= 1.0 else rgb
    return DetScene(
        idx,
        pc[:, :3].astype(np.float32),
        np.clip(np.rint(rgb), 0, 255).astype(np.uint8),
        np.full(n, -100, dtype=np.int64),
        np.full(n, -1, dtype=np.int64),
        boxes,
    )
