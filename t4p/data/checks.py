"""Read-time checks shared by the readers, and a summary of long runs of identical warnings.

The readers validate what they read once, here, not the training code later: finite coordinates and
colours, class ids that are integers in range, boxes with finite centres and positive sizes, non-empty
scenes. Each check raises the reader's own error class (a ``t4p.errors.UserError``) naming the file, the
first bad row (0-based, as numpy indexes the array) and what was expected; nothing is clipped, rounded
or wrapped into a made-up value.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from t4p.errors import UserError


class SourceNotFoundError(UserError, FileNotFoundError):
    """A data source (a file, a folder, the units in it) is not where the user said it is."""


def _values(row: np.ndarray) -> str:
    return " ".join(f"{v:g}" for v in np.atleast_1d(row).tolist())


def _first_bad(bad: np.ndarray, arr: np.ndarray, path: Path | str, what: str, problem: str, err: type[Exception]):
    """Raise ``err`` for the first True row of ``bad`` (N,), naming the count of such rows."""
    rows = np.flatnonzero(bad)
    if len(rows):
        i = int(rows[0])
        more = f" ({len(rows)} of {len(bad)} rows)" if len(rows) > 1 else ""
        raise err(f"{path}: row {i}: {what} ({_values(arr[i])}) {problem}{more}")


def require_finite(arr: np.ndarray, path: Path | str, what: str, err: type[Exception]) -> None:
    """Every row of ``arr`` (N, ...) is finite."""
    bad = np.asarray(~np.isfinite(np.asarray(arr, dtype=np.float64)).reshape(len(arr), -1).all(axis=1))
    _first_bad(bad, arr, path, what, "is not finite; expected finite numbers", err)


def require_range(
    arr: np.ndarray, lo: float, hi: float, path: Path | str, what: str, err: type[Exception]
) -> None:
    """Every value of ``arr`` (N, ...) lies in [lo, hi]."""
    flat = np.asarray(arr, dtype=np.float64).reshape(len(arr), -1)
    bad = np.asarray(((flat < lo) | (flat > hi)).any(axis=1))
    _first_bad(bad, arr, path, what, f"is out of range; expected values in {lo:g}..{hi:g}", err)


def require_ids(
    ids: np.ndarray, path: Path | str, what: str, err: type[Exception], lo: int | None = None, hi: int | None = None
) -> np.ndarray:
    """``ids`` (N,) as int64 after checking they are integers (in lo..hi when given): a float 3.7 is not the id 3."""
    values = np.asarray(ids)
    expected = f"expected integer ids {lo}..{hi}" if lo is not None and hi is not None else "expected integer ids"
    if values.dtype.kind not in "iuf" and len(values):
        raise err(f"{path}: {what} has dtype {values.dtype}; {expected}")
    as_float = values.astype(np.float64)
    _first_bad(~np.isfinite(as_float) | (as_float != np.round(as_float)), values, path, what,
               f"is not an integer; {expected}", err)
    out_of_range = np.zeros(len(values), dtype=bool)
    if lo is not None:
        out_of_range |= as_float < lo
    if hi is not None:
        out_of_range |= as_float > hi
    _first_bad(out_of_range, values, path, what, f"is out of range; {expected}", err)
    return values.astype(np.int64)


def require_boxes(
    boxes: np.ndarray,
    path: Path | str,
    what: str,
    err: type[Exception],
    sizes: slice = slice(3, 6),
    kept: np.ndarray | None = None,
) -> None:
    """Boxes (K, C): every column finite, the ``sizes`` columns positive.

    ``kept`` (K,) bool: only these rows must have positive sizes; the others (boxes the reader drops, e.g. the
    floor of a VoteNet export) may be flat, but no size may be negative.
    """
    require_finite(boxes, path, what, err)
    size = boxes[:, sizes]
    kept = np.ones(len(boxes), dtype=bool) if kept is None else kept
    flat = (size == 0).any(axis=1) & kept
    _first_bad((size < 0).any(axis=1) | flat, boxes, path, what, "has a size <= 0; expected positive sizes", err)


def require_points(n: int, path: Path | str, err: type[Exception]) -> None:
    if n == 0:
        raise err(f"{path}: no points; expected a non-empty scene")


class RepeatedWarnings:
    """Logs the first ``limit`` warnings of each kind; ``flush`` logs one line counting the rest."""

    def __init__(self, logger: logging.Logger, limit: int = 5):
        self.logger = logger
        self.limit = limit
        self.counts: dict[str, int] = {}

    def warn(self, kind: str, msg: str, *args) -> None:
        n = self.counts[kind] = self.counts.get(kind, 0) + 1
        if n <= self.limit:
            self.logger.warning(msg, *args)

    def flush(self, where: str = "") -> None:
        prefix = f"{where}: " if where else ""
        for kind, n in self.counts.items():
            if n > self.limit:
                self.logger.warning("%s%d more %s (the first %d are above)", prefix, n - self.limit, kind, self.limit)
        self.counts.clear()
