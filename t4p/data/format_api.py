"""What one source format provides to ``t4p.data``: the ``Format`` record and the ``PrepareSettings`` it reads.

Each reader module implements its format's hooks (listing units, the files of a unit, preparing and
inspecting one unit, the manifest totals); ``t4p.data.formats.FORMATS`` holds one ``Format`` per format,
and ``prepare``, the datasets, ``t4p data inspect`` and the CLI iterate that table.

``PrepareSettings`` checks its values when made (``t4p data prepare/inspect`` flags or the ``data.*`` config
keys): a bad one is a ``ConfigError`` naming the flag and the key, before anything is read or cached.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Literal

from t4p.config import ConfigError
from t4p.data.classes import CLASS_LISTS

OnBad = Literal["error", "skip"]

# Each setting's command-line flag and config key, for the messages.
SETTING_NAMES = {
    "frame_skip": ("--frame-skip", "data.frame_skip"),
    "image_height": ("--height", "data.image_height"),
    "image_width": ("--width", "data.image_width"),
    "voxel_size": ("--voxel-size", "data.voxel_size"),
    "corr_depth_tol": ("--depth-tol", "data.corr_depth_tol"),
    "label_version": ("--label-version", "data.label_version"),
    "classes": ("--classes", "data.classes"),
    "on_bad": ("--on-bad", "data.on_bad"),
}


def _count(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool) and int(v) >= 1


def _positive(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(float(v)) and float(v) > 0


# (settings, test, what was expected)
SETTING_RULES: tuple[tuple[tuple[str, ...], Callable[[Any], bool], str], ...] = (
    (("frame_skip", "image_height", "image_width"), _count, "an integer >= 1"),
    (("voxel_size", "corr_depth_tol"), _positive, "a finite number > 0"),
    (("label_version",), lambda v: v in ("v1", "v2"), "one of 'v1', 'v2'"),
    (("classes",), lambda v: v in CLASS_LISTS, f"a class list, one of {', '.join(map(repr, CLASS_LISTS))}"),
    (("on_bad",), lambda v: v in ("error", "skip"), "one of 'error', 'skip'"),
)


@dataclass(frozen=True)
class PrepareSettings:
    frame_skip: int = 25
    image_height: int = 240
    image_width: int = 320
    voxel_size: float = 0.025
    corr_depth_tol: float = 0.02
    label_version: str = "v1"
    classes: str = "s3dis13"  # class list of labelled rooms (s3dis-raw)
    on_bad: OnBad = "error"  # a bad unit: an error listing all bad units, or skipped (counted); never cached

    def __post_init__(self) -> None:
        for names, ok, expected in SETTING_RULES:
            for name in names:
                value = getattr(self, name)
                if not ok(value):
                    flag, key = SETTING_NAMES[name]
                    raise ConfigError(f"{flag} (config key {key!r}): expected {expected}, got {value!r}")

    def key(self, fields: tuple[str, ...]) -> dict:
        """The values of ``fields`` (a format's ``key_fields``: the settings that change its cache)."""
        return {k: getattr(self, k) for k in fields}


@dataclass(frozen=True)
class SplitRule:
    """How a format's units fall into train / val / test (see ``t4p.data.datasets.select_units``)."""

    by_area: bool = False  # S3DIS: data.train_areas / data.val_areas / data.test_area (unit entries carry "area")
    train_file: str = ""  # official split files, looked for in data.root, its meta_data/ and its parent
    test_file: str = ""


@dataclass(frozen=True)
class Format:
    """One source format: its reader hooks, cache key, split convention and the tasks it feeds."""

    name: str
    tasks: tuple[str, ...]  # train.task values it feeds
    key_fields: tuple[str, ...]  # PrepareSettings fields that shape its cache
    units: Callable[[Path, PrepareSettings], list[str]]  # independent pieces of work (scene, .sens, room)
    sources: Callable[[Path, str, PrepareSettings], list[Path]]  # what one unit reads (fingerprinted)
    # writes the unit's files; its manifest entry (with optional "warnings": [kind, message] pairs prepare logs)
    prepare_unit: Callable[[Path, str, Path, PrepareSettings], dict]
    inspect_unit: Callable[[Path, str, PrepareSettings], dict]  # one unit's part of `t4p data inspect`
    totals: Callable[[list[dict]], dict]  # manifest totals from the unit entries
    split: SplitRule
    synthetic_dir: str = ""  # where t4p.data.synthetic writes this layout ("" = it does not)
    classes: str = ""  # the class list of its labels when fixed by the format ("" = data.classes / none)
