"""Prepare raw data into caches the datasets read fast: compressed arrays plus a manifest.

``prepare(fmt, src, out, settings, workers, executor)`` splits the source into units (a scene, a
``.sens`` file, a room; ``t4p.data.formats``), prepares them in parallel (processes on this machine by
default, which die with the preparing process; the caller may pass another executor, e.g.
``t4p.sweep.prepare_ray.run_ray_tasks`` for ``t4p data prepare --ray``, so this package never imports the
sweep layer) with a progress bar, and records finished units in ``out/manifest.json`` (at most once a
second while running; a unit finished but not yet recorded when the run is killed is prepared again).

Trust: every file is written under a temporary name and renamed when complete; a unit enters the
manifest only after all its files exist, with a fingerprint of its sources (relative path, size and
mtime of each file, the content hash of small ones) and of the settings that shaped it. A rerun
re-prepares exactly the units whose fingerprint changed (and says so); ``force=True`` rebuilds all.
The manifest says ``complete`` only in its last write, so a half-written cache is never trusted;
``cache_problem`` tells a reader why a cache cannot be used.

Bad units (a reader's ``UserError``: the message names file and line / frame / row) never enter the
cache. They are recorded with their fingerprint under ``bad_units``; with ``settings.on_bad="error"``
``prepare`` caches every good unit and then raises one ``BadDataError`` listing all of them, with
``"skip"`` they are left out and counted (``totals.skipped_units``).

Cache files per format:
* ``scannet-rgbd`` / ``scannet-sens``: ``<scene>/<frame>.npz`` pairs (see ``t4p.data.pairs``);
* ``s3dis-raw``: ``Area_N/<room>.npz`` (xyz, rgb, labels, instances);
* ``scannet-votenet`` / ``sunrgbd``: ``<scene>.npz`` (xyz, rgb, labels, instances, boxes).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm import tqdm

from t4p.data.checks import RepeatedWarnings, SourceNotFoundError
from t4p.data.format_api import PrepareSettings
from t4p.data.formats import get_format
from t4p.errors import UserError, command_path
from t4p.io import clean_temporaries, write_json

__all__ = ["PrepareSettings", "prepare", "read_manifest", "cache_problem", "cache_lock", "NOT_PREPARED", "BadDataError",
           "StaleCacheError"]

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: fingerprinted units, bad_units
SMALL_FILE = 64 * 1024  # sources up to this size are fingerprinted by content too
NAMES_SHOWN = 10  # unit names in one log line or reason
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PROGRESS_EVERY_S = 1.0  # the manifest records finished units at most this often (and at the end)


class BadDataError(UserError, ValueError):
    """Units of a source are bad (``data.on_bad=error``); the message lists every one."""


class StaleCacheError(UserError, ValueError):
    """A prepared cache is incomplete, was prepared with other settings, or its sources changed since."""


def settings_hash(fmt: str, src: str | Path, settings: PrepareSettings) -> str:
    key = settings.key(get_format(fmt).key_fields)
    blob = json.dumps({"fmt": fmt, "src": str(Path(src).resolve()), "v": CACHE_VERSION, **key}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def list_units(fmt: str, src: str | Path, settings: PrepareSettings) -> list[str]:
    """Names of the independent pieces of work of a source (relative paths or scene ids)."""
    src = Path(src)
    f = get_format(fmt)
    if not src.exists():
        raise SourceNotFoundError(f"{src}: no such file or folder (data source for format {fmt!r})")
    return f.units(src, settings)


def _names(units: list[str]) -> str:
    more = f" and {len(units) - NAMES_SHOWN} more" if len(units) > NAMES_SHOWN else ""
    return ", ".join(units[:NAMES_SHOWN]) + more


# --------------------------------------------------------------------------- fingerprints


def _file_digest(path: Path, st: os.stat_result) -> str:
    if not path.is_file() or st.st_size > SMALL_FILE:
        return ""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(paths: list[Path], base: Path, config: str) -> dict:
    """Of the files (and folders) a unit reads: relative path, size, mtime, content hash of small files."""
    h = hashlib.sha256()
    total = 0
    for p in sorted(paths):
        st = p.stat()
        total += st.st_size
        h.update(f"{p.relative_to(base).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\0{_file_digest(p, st)}\n".encode())
    return {"sources": h.hexdigest()[:16], "files": len(paths), "bytes": total, "config": config}


def unit_fingerprints(fmt: str, src: Path, units: list[str], settings: PrepareSettings) -> dict[str, dict]:
    f, config = get_format(fmt), settings_hash(fmt, src, settings)
    base = src if src.is_dir() else src.parent
    return {u: fingerprint(f.sources(src, u, settings), base, config) for u in units}


# --------------------------------------------------------------------------- one unit (runs in workers)


def prepare_unit(fmt: str, src: str, unit: str, out: str, settings: PrepareSettings) -> dict:
    """Prepare one unit into ``out``: its manifest entry, or ``{"bad": message}`` for a bad unit."""
    try:
        return get_format(fmt).prepare_unit(Path(src), unit, Path(out), settings)
    except UserError as err:
        return {"bad": str(err)}


def _parent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _watch_parent(pid: int) -> None:
    while _parent_alive(pid):
        time.sleep(1.0)
    os._exit(1)


def die_with_parent(pid: int) -> None:
    """Pool initializer: the worker ends when process ``pid`` (the preparer) dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # sent when our parent exits
    else:
        threading.Thread(target=_watch_parent, args=(pid,), daemon=True).start()
    if not _parent_alive(pid):  # it died before prctl took effect
        os._exit(1)


# (function, jobs) -> (unit, manifest entry) as each job finishes; job[2] is the unit's name
Executor = Callable[[Callable[..., dict], list[tuple]], Iterator[tuple[str, dict]]]


def _run_local(jobs: list[tuple], workers: int) -> Iterator[tuple[str, dict]]:
    if workers <= 1:
        for job in jobs:
            yield job[2], prepare_unit(*job)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(prepare_unit, *job): job[2] for job in jobs}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


# --------------------------------------------------------------------------- manifest


def read_manifest(out: str | Path) -> dict:
    """The manifest of the cache ``out`` ({} when there is none); one that does not parse is a ``StaleCacheError``."""
    path = Path(out) / "manifest.json"
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _corrupt_manifest(path, f"not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise _corrupt_manifest(path, f"a JSON {type(manifest).__name__}, not an object")
    return manifest


def _corrupt_manifest(path: Path, problem: str) -> StaleCacheError:
    return StaleCacheError(
        f"{path}: {problem}; expected the manifest `t4p data prepare` writes. The cache cannot be trusted: "
        f"rebuild it with `{command_path('t4p')} data prepare <format> <source> {path.parent} --force`"
    )


def is_complete(out: str | Path) -> bool:
    m = read_manifest(out)
    return bool(m) and m.get("complete", False)


@contextlib.contextmanager
def cache_lock(out: Path):
    """One preparer per cache folder at a time (other processes wait, then find the work done)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _open_manifest(out: Path, fmt: str, src: Path, settings: PrepareSettings, force: bool) -> dict:
    """The manifest to continue from: the recorded units of the same settings, none when forced or foreign."""
    h = settings_hash(fmt, src, settings)
    fresh = {
        "format": fmt,
        "source": str(src.resolve()),
        "config_hash": h,
        "settings": settings.key(get_format(fmt).key_fields),
        "complete": False,
        "units": {},
        "bad_units": {},
    }
    if force:  # the old manifest is not read: it may be the reason for --force
        if (out / "manifest.json").exists():
            log.info("%s: --force: preparing every unit again", out)
        return fresh
    old = read_manifest(out)
    if old.get("config_hash") not in (None, h):
        log.warning("%s: cache was prepared with other settings; preparing again", out)
        return fresh
    return {**fresh, "units": old.get("units", {}), "bad_units": old.get("bad_units", {})}


def _entry(manifest: dict, unit: str) -> dict | None:
    return manifest["units"].get(unit) or manifest["bad_units"].get(unit)


def _changed(manifest: dict, units: list[str], fps: dict[str, dict]) -> list[str]:
    """Recorded units whose sources or settings changed since they were prepared."""
    return [u for u in units if (r := _entry(manifest, u)) is not None and r.get("fingerprint") != fps[u]]


def _files_missing(manifest: dict, out: Path) -> list[str]:
    return [u for u, e in manifest["units"].items() if not all((out / f).exists() for f in e["files"])]


def _todo(manifest: dict, units: list[str], fps: dict[str, dict], out: Path) -> list[str]:
    """The units to prepare (new, changed, files missing), with a log line saying why."""
    changed = _changed(manifest, units, fps)
    redo = set(changed) | set(_files_missing(manifest, out)) | {u for u in units if _entry(manifest, u) is None}
    todo = [u for u in units if u in redo]
    if len(todo) < len(units):
        log.info("%s: %d of %d units already prepared, skipping them", out, len(units) - len(todo), len(units))
    if changed:
        log.info("%s: re-preparing %d of %d units whose sources changed: %s", out, len(changed), len(units),
                 _names(changed))
    return todo


def _drop_files(out: Path, files: list[str], keep: list[str]) -> None:
    for f in set(files) - set(keep):
        (out / f).unlink(missing_ok=True)


def _bad_message(src: Path, out: Path, manifest: dict, n_units: int) -> str:
    bad = manifest["bad_units"]
    lines = [
        f"{len(bad)} of {n_units} units of {src} are bad (none of them is cached; the other "
        f"{len(manifest['units'])} are, in {out}):",
        *(f"  - {b['problem']}" for b in bad.values()),
        "Fix these files, or set data.on_bad=skip (t4p data prepare --on-bad skip) to leave these units out.",
    ]
    return "\n".join(lines)


def _finish(manifest: dict, fmt: str, units: list[str], settings: PrepareSettings, out: Path) -> dict:
    manifest["units"] = {u: manifest["units"][u] for u in units if u in manifest["units"]}
    bad = manifest["bad_units"] = {u: manifest["bad_units"][u] for u in units if u in manifest["bad_units"]}
    skip = settings.on_bad == "skip"
    manifest["on_bad"] = settings.on_bad
    manifest["complete"] = not bad or skip
    manifest["totals"] = {
        **get_format(fmt).totals(list(manifest["units"].values())),
        "skipped_units": len(bad) if skip else 0,
    }
    write_json(out / "manifest.json", manifest)  # last: only now does the cache count as complete
    if bad and skip:
        log.warning("%s: left out %d bad units (data.on_bad=skip; listed under bad_units in manifest.json): %s",
                    out, len(bad), _names(list(bad)))
    return manifest


def _record(
    manifest: dict, results: Iterator[tuple[str, dict]], fps: dict[str, dict], old_files: dict, out: Path, bar: tqdm
) -> None:
    """Record each unit as it finishes: good ones under ``units``, bad ones (no files) under ``bad_units``.

    A unit's ``warnings`` (``[kind, message]`` pairs its reader returns instead of logging them in a worker) are
    logged here, the first few of each kind across all units, then a count; they are not recorded.
    """
    notes, last_write = RepeatedWarnings(log), time.monotonic()
    for unit, entry in results:
        for kind, message in entry.pop("warnings", []):
            notes.warn(kind, "%s", message)
        _drop_files(out, old_files.get(unit, []), keep=entry.get("files", []))
        if "bad" in entry:
            manifest["bad_units"][unit] = {"problem": entry["bad"], "fingerprint": fps[unit]}
            notes.warn("bad units", "bad unit %s: %s", unit, entry["bad"])
        else:
            manifest["units"][unit] = {**entry, "fingerprint": fps[unit]}
        if time.monotonic() - last_write > PROGRESS_EVERY_S:  # atomic: a unit counts only once recorded
            write_json(out / "manifest.json", manifest)
            last_write = time.monotonic()
        bar.update(1)
    notes.flush(str(out))


def prepare(
    fmt: str,
    src: str | Path,
    out: str | Path,
    settings: PrepareSettings | None = None,
    workers: int = 1,
    executor: Executor | None = None,
    progress: bool = True,
    *,
    force: bool = False,
) -> dict:
    """Prepare every unit of ``src`` into ``out`` (skipping finished, unchanged ones); returns the manifest.

    ``executor(prepare_unit, jobs)`` yields ``(unit, entry)`` as jobs finish; default: ``workers``
    processes on this machine. Raises ``BadDataError`` (after caching the good units) when units are bad
    and ``settings.on_bad == "error"``.
    """
    settings = settings or PrepareSettings()
    src, out = Path(src), Path(out)
    units = list_units(fmt, src, settings)
    with cache_lock(out):
        clean_temporaries(out)
        manifest = _open_manifest(out, fmt, src, settings, force)
        fps = unit_fingerprints(fmt, src, units, settings)
        todo = _todo(manifest, units, fps, out)
        old_files = {u: manifest["units"].pop(u)["files"] for u in todo if u in manifest["units"]}
        for u in todo:
            manifest["bad_units"].pop(u, None)
        if todo:
            write_json(out / "manifest.json", manifest)  # incomplete before any file of the cache changes
        jobs = [(fmt, str(src), u, str(out), settings) for u in todo]
        results = executor(prepare_unit, jobs) if executor is not None else _run_local(jobs, workers)
        bar = tqdm(total=len(jobs), desc=f"prepare {fmt}", unit="unit", disable=not progress or not jobs)
        _record(manifest, results, fps, old_files, out, bar)
        bar.close()
        manifest = _finish(manifest, fmt, units, settings, out)
    if manifest["bad_units"] and settings.on_bad == "error":
        raise BadDataError(_bad_message(src, out, manifest, len(units)))
    return manifest


# --------------------------------------------------------------------------- readers of a cache


NOT_PREPARED = "not prepared yet"  # cache_problem of a folder nobody prepared


def cache_problem(fmt: str, src: str | Path, out: str | Path, settings: PrepareSettings) -> str | None:
    """Why the cache at ``out`` cannot be trusted for ``src`` under ``settings`` (None: it can)."""
    src = Path(src)
    m = read_manifest(out)
    if not m:
        return NOT_PREPARED
    if m.get("config_hash") != settings_hash(fmt, src, settings):
        return "prepared with other settings (another config, source folder or t4p cache version)"
    if not m.get("complete"):
        return "incomplete (an interrupted prepare, or bad units under data.on_bad=error)"
    m.setdefault("bad_units", {})
    units = list_units(fmt, src, settings)
    added = [u for u in units if _entry(m, u) is None]
    removed = sorted((set(m["units"]) | set(m["bad_units"])) - set(units))
    changed = _changed(m, units, unit_fingerprints(fmt, src, units, settings))
    for what, names in (("added", added), ("removed", removed), ("changed", changed)):
        if names:
            return f"stale: {_names(names)} ({len(names)} of {len(units)} units) {what} since it was prepared"
    if missing := _files_missing(m, Path(out)):
        return f"damaged: files of {_names(missing)} are missing"
    if m["bad_units"] and settings.on_bad == "error":
        return f"prepared with data.on_bad=skip, leaving out {len(m['bad_units'])} bad units (now data.on_bad=error)"
    return None


def stale_cache_error(fmt: str, src: str | Path, out: str | Path, problem: str) -> StaleCacheError:
    return StaleCacheError(
        f"{out}: the prepared cache of {src} is {problem}; refusing to use it. Run `{command_path('t4p')} data "
        f"prepare {fmt} {src} {out}` with the same settings (it re-prepares exactly the stale units; --force "
        "rebuilds all)"
    )


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
