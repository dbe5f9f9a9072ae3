"""The format table: one ``Format`` per source format t4p reads (see ``t4p.data.format_api``).

``t4p data prepare / inspect``, ``t4p.data.prepare``, ``t4p.data.summary`` and ``t4p.data.datasets``
iterate this table; none of them branches on a format's name. A new format is one reader module
implementing the hooks plus one entry here.
"""

from __future__ import annotations

from functools import partial
from types import ModuleType

from t4p.data import frames, s3dis, scannet_rgbd, scannet_sens, scannet_votenet, sunrgbd
from t4p.data.format_api import Format, SplitRule
from t4p.errors import UserError

FRAME_KEYS = ("frame_skip", "image_height", "image_width", "voxel_size", "corr_depth_tol")
SCANNET_SPLIT = SplitRule(train_file="scannetv2_train.txt", test_file="scannetv2_val.txt")
SUNRGBD_SPLIT = SplitRule(train_file="train_data_idx.txt", test_file="val_data_idx.txt")


def _reader(name: str, reader: ModuleType, **fields) -> Format:
    """A format whose reader module implements every hook (units, sources, prepare_unit, inspect_unit, totals)."""
    hooks = {k: getattr(reader, k) for k in ("units", "sources", "prepare_unit", "inspect_unit", "totals")}
    return Format(name=name, **hooks, **fields)


def _frames(name: str, reader: ModuleType, **fields) -> Format:
    """An RGB-D format: its reader lists units, sources and frames; ``t4p.data.frames`` builds the pair caches."""
    return Format(
        name=name, tasks=("pretrain",), key_fields=FRAME_KEYS, units=reader.units, sources=reader.sources,
        prepare_unit=partial(frames.prepare_unit, reader.open_frames),
        inspect_unit=partial(frames.inspect_unit, reader.open_frames), totals=frames.totals, split=SCANNET_SPLIT,
        **fields,
    )  # fmt: skip


_TABLE = (
    _frames("scannet-sens", scannet_sens),
    _frames("scannet-rgbd", scannet_rgbd, synthetic_dir="scannet"),
    _reader("s3dis-raw", s3dis, tasks=("semseg", "insseg"), key_fields=("classes",), split=SplitRule(by_area=True),
            synthetic_dir="s3dis"),
    _reader("scannet-votenet", scannet_votenet, tasks=("det",), key_fields=(), split=SCANNET_SPLIT,
            synthetic_dir="scannet_votenet", classes="scannet18"),
    _reader("sunrgbd", sunrgbd, tasks=("det",), key_fields=("label_version",), split=SUNRGBD_SPLIT,
            synthetic_dir="sunrgbd", classes="sunrgbd10"),
)  # fmt: skip
FORMATS: dict[str, Format] = {f.name: f for f in _TABLE}


class UnknownFormatError(UserError, ValueError):
    """A data format name that is not in ``FORMATS``."""


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise UnknownFormatError(f"unknown data format {name!r}; expected one of {', '.join(FORMATS)}") from None


def formats_for_task(task: str) -> tuple[str, ...]:
    """The formats that can feed ``train.task``."""
    return tuple(name for name, f in FORMATS.items() if task in f.tasks)
