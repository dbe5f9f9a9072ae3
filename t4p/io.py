"""Atomic file writes, the one helper every writer of t4p uses: a temporary name in the same folder, then rename.

An interrupted run (crash, Ctrl-C, SIGKILL) leaves either the old file or the complete new
one, never a half-written file. Temporary names start with ``.tmp-`` so readers skip them
and ``clean_temporaries`` can remove leftovers on the next run. Writers that produce their
bytes with another library (``torch.save``, ``np.save``) write into ``atomic_path``'s file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

TMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, complete: Callable[[Path], bool]):
    """Yield a temporary sibling folder; rename it onto ``path`` if the block succeeds.

    Where another writer renamed its folder onto ``path`` first, that one is kept when ``complete(path)``
    says it is whole (the same content, written by a concurrent run); otherwise the rename's error is raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, path)  # refuses a non-empty target: the first complete folder wins
        except OSError:
            if not complete(path):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj, indent: int = 1, **dumps_kwargs) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=True, **dumps_kwargs))


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """One array as ``.npy``, written atomically (the temporary name keeps the suffix: np.save adds none)."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """A compressed ``.npz`` (readable by ``np.load``) written atomically.

    Deflate level 1 instead of ``np.savez_compressed``'s default: about 4x faster to write,
    a few percent larger.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, arr in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)
    write_bytes(path, buf.getvalue())


def clean_temporaries(root: str | os.PathLike) -> int:
    """Remove leftover temporary files under ``root`` (from an interrupted run); return how many."""
    n = 0
    for p in Path(root).rglob(TMP_PREFIX + "*"):
        if p.is_file():
            p.unlink()
            n += 1
    return n
