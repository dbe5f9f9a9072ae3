"""What one source format provides to ``t4p.data``: the ``Format`` record and the ``PrepareSettings`` it reads.

Each reader module implements its format's hooks (listing units, the files of a unit, preparing and
inspecting one unit, the manifest totals); ``t4p.data.formats.FORMATS`` holds one ``Format`` per format,
and ``prepare``, the datasets, ``t4p data inspect`` and the CLI iterate that table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

OnBad = Literal["error", "skip"]


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
    prepare_unit: Callable[[Path, str, Path, PrepareSettings], dict]  # writes the unit's files; its manifest entry
    inspect_unit: Callable[[Path, str, PrepareSettings], dict]  # one unit's part of `t4p data inspect`
    totals: Callable[[list[dict]], dict]  # manifest totals from the unit entries
    split: SplitRule
    synthetic_dir: str = ""  # where t4p.data.synthetic writes this layout ("" = it does not)
    classes: str = ""  # the class list of its labels when fixed by the format ("" = data.classes / none)
