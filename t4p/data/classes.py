"""Class lists of the datasets t4p reads, with the names the text encoder sees.

Each list is ordered as the dataset's benchmark numbers its classes (label ids 0..K-1).
``text_names`` are the words put into the prompt template ("point cloud of {}.").
"""

from __future__ import annotations

from dataclasses import dataclass

from t4p.config import ConfigError


@dataclass(frozen=True)
class ClassList:
    key: str
    names: tuple[str, ...]  # dataset spelling (file names, label files)
    text_names: tuple[str, ...]  # what the text encoder reads
    nyu40_ids: tuple[int, ...] = ()  # ScanNet: NYU40 id of each class

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


# ScanNet v2 benchmark (20 classes): the pre-training text classes (the paper does not list them).
SCANNET20 = ClassList(
    "scannet20",
    ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
     "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
     "bathtub", "otherfurniture"),
    ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
     "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
     "bathtub", "other furniture"),
    (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39),
)

# S3DIS (13 classes); the raw data's extra "stairs" is mapped to clutter, as peers do.
S3DIS13 = ClassList(
    "s3dis13",
    ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
     "bookcase", "board", "clutter"),
    ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
     "bookcase", "board", "clutter"),
)
S3DIS_ALIASES = {"stairs": "clutter"}

# SUN RGB-D v1 detection benchmark (10 classes, VoteNet's order).
SUNRGBD10 = ClassList(
    "sunrgbd10",
    ("bed", "table", "sofa", "chair", "toilet", "desk", "dresser", "night_stand", "bookshelf", "bathtub"),
    ("bed", "table", "sofa", "chair", "toilet", "desk", "dresser", "night stand", "bookshelf", "bathtub"),
)

# ScanNet v2 detection benchmark (18 classes, VoteNet's order and NYU40 ids).
SCANNET18 = ClassList(
    "scannet18",
    ("cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture", "counter",
     "desk", "curtain", "refrigerator", "showercurtrain", "toilet", "sink", "bathtub", "garbagebin"),
    ("cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture", "counter",
     "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink", "bathtub", "garbage bin"),
    (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39),
)

CLASS_LISTS = {c.key: c for c in (SCANNET20, S3DIS13, SUNRGBD10, SCANNET18)}


def class_list(key: str) -> ClassList:
    try:
        return CLASS_LISTS[key]
    except KeyError:
        raise ConfigError(f"unknown class list {key!r}; expected one of {sorted(CLASS_LISTS)}") from None
