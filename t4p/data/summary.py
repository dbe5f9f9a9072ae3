"""``t4p data inspect``: one JSON-able summary of a data source, read with the real readers.

Each format's ``inspect_unit`` summarises one unit (``t4p.data.formats``); the parts are summed here:
counts add up, dictionaries merge, lists concatenate, bounds take the min / max. A bad unit (a reader's
``UserError``) is reported like ``t4p data prepare`` does: with ``on_bad="error"`` one error listing every
bad unit, with ``"skip"`` left out and listed under ``bad_units`` (``skipped_units`` counts them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from t4p.data.formats import get_format
from t4p.data.prepare import BadDataError, PrepareSettings, list_units
from t4p.errors import UserError

EXAMPLES = 5  # skip examples kept per reason


def _bar(items: list) -> tqdm:
    """Progress on stderr (the JSON goes to stdout); silent for a single item."""
    return tqdm(items, desc="inspect", unit="scene", leave=False, disable=len(items) < 2)


def _bounds(a: dict | None, b: dict) -> dict:
    if a is None:
        return b
    return {"min": np.minimum(a["min"], b["min"]).tolist(), "max": np.maximum(a["max"], b["max"]).tolist()}


def merge(total: dict, part: dict) -> dict:
    """``part`` added into ``total`` (numbers add, dicts merge, lists concatenate, ``bounds`` min/max)."""
    for k, v in part.items():
        if k == "bounds":
            total[k] = _bounds(total.get(k), v)
        elif isinstance(v, dict):
            total[k] = merge(total.get(k, {}), v)
        elif isinstance(v, list):
            total[k] = total.get(k, []) + v
        else:
            total[k] = total.get(k, 0) + v
    return total


def _rounded_bounds(b: dict | None) -> dict | None:
    if b is None or not np.isfinite(b["min"]).all():
        return None
    return {k: [round(float(x), 4) for x in b[k]] for k in ("min", "max")}


def inspect_source(path: str | Path, fmt: str, settings: PrepareSettings | None = None) -> dict:
    """Summary of ``path`` read as ``fmt``: points or frames, classes, instances, boxes, bounds (m), bad units."""
    path, settings = Path(path), settings or PrepareSettings()
    f = get_format(fmt)
    units = list_units(fmt, path, settings)
    total: dict = {"num_points": 0, "classes": {}, "num_instances": 0, "num_boxes": 0}
    bad: dict[str, str] = {}
    for unit in _bar(units):
        try:
            merge(total, f.inspect_unit(path, unit, settings))
        except UserError as err:
            bad[unit] = str(err)
    if bad and settings.on_bad == "error":
        listed = "\n".join(f"  - {msg}" for msg in bad.values())
        raise BadDataError(f"{len(bad)} of {len(units)} units of {path} are bad:\n{listed}\n"
                           "Fix these files, or pass --on-bad skip to leave them out.")
    for reason, examples in total.get("skip_examples", {}).items():
        total["skip_examples"][reason] = examples[:EXAMPLES]
    total["bounds"] = _rounded_bounds(total.get("bounds"))
    return {"format": fmt, "path": str(path), **total, "skipped_units": len(bad), "bad_units": bad}
