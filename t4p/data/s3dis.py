"""S3DIS in the raw Stanford layout: ``Area_N/<room>/Annotations/<class>_<k>.txt``.

Each annotation file holds one object instance, one point per line: ``x y z r g b``.
A room becomes arrays xyz float32 (N, 3), rgb uint8 (N, 3), semantic label (N,) of the 13
classes and instance id (N,) (one per annotation file). ``stairs`` maps to clutter as peers
do; any other unknown class name is an error naming the file.

Every line must be six numbers: finite coordinates, colours in 0..255. The one known defect of the raw
release is repaired: ``Area_5/hallway_6/Annotations/ceiling_1.txt`` near line 180389 has a control
character inside a number (``103.0\\x100000``); a line that becomes six valid numbers once its control
characters are removed is kept, logged and listed in ``Room.repaired``. Anything else that is not a
number (``1.1^2``, ``1O0``, ``nan``) is an error naming the file and line: no character is dropped
to make up a value. A room whose annotation files hold no point at all is an error too.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from t4p.data.checks import RepeatedWarnings
from t4p.data.classes import S3DIS13, S3DIS_ALIASES, ClassList, class_list
from t4p.data.format_api import PrepareSettings
from t4p.errors import UserError
from t4p.io import save_npz

log = logging.getLogger(__name__)

_ANNOTATION_NAME = re.compile(r"[A-Za-z]+_\d+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # control characters that are not whitespace
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(nan|inf|infinity)", re.IGNORECASE)
POINT_LINE = "'x y z r g b' (six numbers, r g b in 0..255)"
MAX_LISTED = 5  # bad lines named in one error


class S3DISFormatError(UserError, ValueError):
    """A raw S3DIS file is malformed or names an unknown class (the message names file and line)."""


@dataclass
class Room:
    area: int
    name: str
    xyz: np.ndarray  # (N, 3) float32 metres
    rgb: np.ndarray  # (N, 3) uint8
    labels: np.ndarray  # (N,) int64 class index in S3DIS13
    instances: np.ndarray  # (N,) int64 instance id, one per annotation file
    repaired: list[str] = field(default_factory=list)  # "file:line" of lines with a control character removed


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


def _numbers(line: str) -> list[float] | None:
    parts = line.split()
    if len(parts) != 6 or not all(_NUMBER.fullmatch(p) for p in parts):
        return None
    return [float(p) for p in parts]


def _line_problem(line: str, values: list[float] | None) -> str | None:
    """What is wrong with a line (None: a valid point)."""
    if values is None:
        return f"{line!r} is not six numbers; expected {POINT_LINE}"
    if not np.isfinite(values).all():
        return f"{line!r} has a value that is not finite; expected {POINT_LINE}"
    if not all(0 <= v <= 255 for v in values[3:]):
        return f"{line!r} has colour {' '.join(f'{v:g}' for v in values[3:])} out of range; expected r g b in 0..255"
    return None


def _parse_lines(path: Path, repaired: list[str], notes: RepeatedWarnings) -> np.ndarray:
    """Line-by-line parse naming every bad line; the control-character repair is the only one."""
    rows, bad = [], []
    text = path.read_text(errors="surrogateescape")
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        values = _numbers(line)
        if values is None and _CONTROL.search(line):
            values = _numbers(_CONTROL.sub("", line))
            if values is not None and _line_problem(line, values) is None:
                repaired.append(f"{path}:{lineno}")
                notes.warn("repaired lines", "%s:%d: removed a control character from %r", path, lineno, line)
        problem = _line_problem(line, values)
        if problem:
            bad.append(f"{path}:{lineno}: {problem}")
        else:
            rows.append(values)
    if bad:
        more = f" ({len(bad)} bad lines in this file)" if len(bad) > MAX_LISTED else ""
        raise S3DISFormatError("; ".join(bad[:MAX_LISTED]) + more)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def _valid(arr: np.ndarray) -> bool:
    return arr.shape[1] == 6 and bool(np.isfinite(arr).all()) and bool(((arr[:, 3:] >= 0) & (arr[:, 3:] <= 255)).all())


def read_points_txt(path: str | Path, repaired: list[str], notes: RepeatedWarnings | None = None) -> np.ndarray:
    """An ``x y z r g b`` text file -> (N, 6) float64; any bad line is an error naming file and line."""
    path = Path(path)
    try:  # fast path: numpy's C parser; any malformed line raises
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty-file warning
            arr = np.loadtxt(path, dtype=np.float64, ndmin=2, comments=None)
        if arr.size == 0 or _valid(arr):
            return arr.reshape(-1, 6)
    except ValueError:
        pass
    return _parse_lines(path, repaired, notes or RepeatedWarnings(log))


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
    notes = RepeatedWarnings(log)
    parts, labels, instances = [], [], []
    for inst, f in enumerate(files):
        if not _ANNOTATION_NAME.fullmatch(f.stem):
            log.warning("%s: unexpected annotation file name (expected <class>_<k>.txt; a duplicate?)", f)
        cls = class_of(f, classes)
        pts = read_points_txt(f, repaired, notes)  # (n, 6)
        parts.append(pts)
        labels.append(np.full(len(pts), cls, dtype=np.int64))
        instances.append(np.full(len(pts), inst, dtype=np.int64))
    notes.flush(str(ann))
    pts = np.concatenate(parts)
    if not len(pts):
        raise S3DISFormatError(f"{ann}: all {len(files)} annotation files are empty; expected lines {POINT_LINE}")
    return Room(
        area,
        room_dir.name,
        pts[:, :3].astype(np.float32),
        pts[:, 3:].astype(np.uint8),
        np.concatenate(labels),
        np.concatenate(instances),
        repaired,
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
        raise S3DISFormatError(
            f"{root}: no rooms found (expected Area_N/<room>/Annotations/<class>_<k>.txt)"
        )
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


# --------------------------------------------------------------------------- format hooks (t4p.data.formats)


def units(src: Path, settings: PrepareSettings) -> list[str]:
    return [f"Area_{a}/{r.name}" for a, r in list_rooms(src)]


def room_dir_of(src: Path, unit: str) -> Path:
    if (src / "Annotations").is_dir():
        return src
    if src.name == unit.split("/")[0]:
        return src / unit.split("/")[1]
    return src / unit


def sources(src: Path, unit: str, settings: PrepareSettings) -> list[Path]:
    """The annotation files and their folder (its listing is which instances there are)."""
    ann = room_dir_of(src, unit) / "Annotations"
    return [ann, *sorted(p for p in ann.glob("*.txt") if not p.name.startswith("."))]


def prepare_unit(src: Path, unit: str, out: Path, settings: PrepareSettings) -> dict:
    room = read_room(room_dir_of(src, unit), classes=class_list(settings.classes))
    rel = f"Area_{room.area}/{room.name}.npz"
    save_npz(out / rel, xyz=room.xyz, rgb=room.rgb, labels=room.labels, instances=room.instances)
    return {"files": [rel], "points": len(room.xyz), "repaired_lines": room.repaired, "area": room.area}


def inspect_unit(src: Path, unit: str, settings: PrepareSettings) -> dict:
    cl = class_list(settings.classes)
    room = read_room(room_dir_of(src, unit), classes=cl)
    counts = np.bincount(room.labels, minlength=len(cl))
    return {
        "num_points": len(room.xyz),
        "classes": {c: int(k) for c, k in zip(cl.names, counts, strict=True) if k},
        "num_instances": len(np.unique(room.instances)),
        "num_boxes": 0,
        "bounds": {"min": room.xyz.min(0).tolist(), "max": room.xyz.max(0).tolist()},
        "repaired_lines": room.repaired,
    }


def totals(entries: list[dict]) -> dict:
    return {
        "points": int(sum(e["points"] for e in entries)),
        "repaired_lines": sum(len(e["repaired_lines"]) for e in entries),
    }
