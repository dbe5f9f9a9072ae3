"""S3DIS in the raw Stanford layout: ``Area_N/<room>/Annotations/<class>_<k>.txt``.

Each annotation file holds one object instance, one point per line: ``x y z r g b``.
A room becomes arrays xyz float32 (N, 3), rgb uint8 (N, 3), semantic label (N,) of the 13
classes and instance id (N,) (one per annotation file). ``stairs`` maps to clutter as peers
do; any other unknown class name is an error naming the file.

The raw release has malformed lines (e.g. ``Area_5/hallway_6/Annotations/ceiling_1.txt``
near line 180389 has a control character inside a number, ``103.0\\x100000``). Such lines
are repaired when removing stray characters leaves six numbers, otherwise skipped; either
way the file and line are logged and counted in ``Room.repaired`` / ``Room.skipped``.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from t4p.data.classes import S3DIS13, S3DIS_ALIASES, ClassList

log = logging.getLogger(__name__)

_ANNOTATION_NAME = re.compile(r"[A-Za-z]+_\d+")
_JUNK = re.compile(r"[^0-9eE+\-.\s]")  # anything that cannot be part of a number or a separator


class S3DISFormatError(ValueError):
    """A raw S3DIS file is malformed beyond repair or names an unknown class."""


@dataclass
class Room:
    area: int
    name: str
    xyz: np.ndarray  # (N, 3) float32 metres
    rgb: np.ndarray  # (N, 3) uint8
    labels: np.ndarray  # (N,) int64 class index in S3DIS13
    instances: np.ndarray  # (N,) int64 instance id, one per annotation file
    repaired: list[str] = field(default_factory=list)  # "file:line" of repaired lines
    skipped: list[str] = field(default_factory=list)  # "file:line" of skipped lines


def class_of(path: Path, classes: ClassList = S3DIS13) -> int:
    """Class index from an annotation file name ``<class>_<k>.txt``."""
    stem = path.stem
    name = stem.rsplit("_", 1)[0] if "_" in stem else stem
    if classes is S3DIS13:
        name = S3DIS_ALIASES.get(name, name)
    if name not in classes.names:
        extra = " (or 'stairs')" if classes is S3DIS13 else ""
        raise S3DISFormatError(
            f"{path}: unknown class {name!r}; expected one of {', '.join(classes.names)}{extra} "
            f"(class list {classes.key!r})"
        )
    return classes.index(name)


def _parse_slow(path: Path, text: str, repaired: list[str], skipped: list[str]) -> np.ndarray:
    """Line-by-line parse that repairs or skips malformed lines, naming each one."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 6:
                raise ValueError
            rows.append([float(p) for p in parts])
            continue
        except ValueError:
            pass
        fixed = _JUNK.sub("", line).split()
        try:
            if len(fixed) != 6:
                raise ValueError
            rows.append([float(p) for p in fixed])
            repaired.append(f"{path}:{lineno}")
            log.warning("%s:%d: repaired malformed line %r -> %r", path, lineno, line, " ".join(fixed))
        except ValueError:
            skipped.append(f"{path}:{lineno}")
            log.warning("%s:%d: skipped malformed line %r (expected 'x y z r g b')", path, lineno, line)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def read_points_txt(path: str | Path, repaired: list[str], skipped: list[str]) -> np.ndarray:
    """An ``x y z r g b`` text file -> (N, 6) float64; malformed lines are repaired or skipped (counted)."""
    path = Path(path)
    try:  # fast path: numpy's C parser; any malformed line raises
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty-file warning
            arr = np.loadtxt(path, dtype=np.float64, ndmin=2)
        if arr.shape[1] == 6 or arr.size == 0:
            return arr.reshape(-1, 6)
    except ValueError:
        pass
    text = path.read_text(errors="surrogateescape")
    return _parse_slow(path, text, repaired, skipped)


def read_room(room_dir: str | Path, area: int | None = None, classes: ClassList = S3DIS13) -> Room:
    """Read one raw room from its ``Annotations/`` folder; class names come from ``classes``."""
    room_dir = Path(room_dir)
    ann = room_dir / "Annotations"
    files = sorted(p for p in ann.glob("*.txt") if not p.name.startswith("."))
    if not files:
        raise S3DISFormatError(f"{ann}: no annotation files (expected <class>_<k>.txt)")
    if area is None:
        area = area_of(room_dir.parent)
    repaired: list[str] = []
    skipped: list[str] = []
    parts, labels, instances = [], [], []
    for inst, f in enumerate(files):
        if not _ANNOTATION_NAME.fullmatch(f.stem):
            log.warning("%s: unexpected annotation file name (expected <class>_<k>.txt; a duplicate?)", f)
        cls = class_of(f, classes)
        pts = read_points_txt(f, repaired, skipped)  # (n, 6)
        parts.append(pts)
        labels.append(np.full(len(pts), cls, dtype=np.int64))
        instances.append(np.full(len(pts), inst, dtype=np.int64))
    pts = np.concatenate(parts)
    return Room(
        area,
        room_dir.name,
        pts[:, :3].astype(np.float32),
        np.clip(pts[:, 3:], 0, 255).astype(np.uint8),
        np.concatenate(labels),
        np.concatenate(instances),
        repaired,
        skipped,
    )


def area_of(area_dir: Path) -> int:
    m = re.fullmatch(r"Area_(\d+)", area_dir.name)
    if not m:
        raise S3DISFormatError(f"{area_dir}: expected a folder named Area_<N>")
    return int(m.group(1))


def list_rooms(root: str | Path) -> list[tuple[int, Path]]:
    """All (area, room folder) under ``root`` (an S3DIS root, one ``Area_N`` or one room)."""
    root = Path(root)
    if (root / "Annotations").is_dir():
        return [(area_of(root.parent), root)]
    areas = [root] if re.fullmatch(r"Area_\d+", root.name) else sorted(root.glob("Area_*"))
    out = []
    for a in areas:
        if a.is_dir():
            out += [(area_of(a), r) for r in sorted(a.iterdir()) if (r / "Annotations").is_dir()]
    if not out:
        raise S3DISFormatError(f"{root}: no rooms found (expected Area_N/<room>/Annotations/<class>_<k>.txt)")
    return out


def split_rooms(
    rooms: list[tuple[int, Path]],
    split: str,
    train_areas: tuple[int, ...],
    val_areas: tuple[int, ...],
    test_area: int,
    val_fraction: float,
) -> list[tuple[int, Path]]:
    """Area-based splits: test = ``test_area``; val = ``val_areas`` or every k-th room of the train areas."""
    if split == "test":
        return [r for r in rooms if r[0] == test_area]
    if val_areas:
        chosen = val_areas if split == "val" else tuple(a for a in train_areas if a not in val_areas)
        return [r for r in rooms if r[0] in chosen]
    train = [r for r in rooms if r[0] in train_areas]
    n_val = int(round(len(train) * val_fraction)) if len(train) > 1 else 0
    n_val = min(max(n_val, 1 if len(train) > 1 and val_fraction > 0 else 0), len(train) - 1)
    step = len(train) / n_val if n_val else 0
    val_idx = {int(i * step + step / 2) for i in range(n_val)}  # spread over the areas, deterministic
    if split == "val":
        return [r for i, r in enumerate(train) if i in val_idx] or train[:1]
    return [r for i, r in enumerate(train) if i not in val_idx]
