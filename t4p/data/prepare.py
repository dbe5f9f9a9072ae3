"""Prepare raw data into caches the datasets read fast: compressed arrays plus a manifest.

``prepare(fmt, src, out, settings, workers, executor)`` splits the source into units (a scene, a
``.sens`` file, a room), prepares them in parallel (processes on this machine by default; the
caller may pass another executor, e.g. ``t4p.sweep.prepare_ray.run_ray_tasks`` for ``t4p data
prepare --ray``, so this package never imports the sweep layer) with a progress bar, and records each
finished unit in ``out/manifest.json``. Every file is written under a temporary name and
renamed when complete, and a unit enters the manifest only after all its files exist, so an
interrupted run leaves no half-written file; re-running skips the units already done.

Cache files per format:
* ``scannet-rgbd`` / ``scannet-sens``: ``<scene>/<frame>.npz`` pairs (see ``t4p.data.pairs``);
* ``s3dis-raw``: ``Area_N/<room>.npz`` (xyz, rgb, labels, instances);
* ``scannet-votenet`` / ``sunrgbd``: ``<scene>.npz`` (xyz, rgb, labels, instances, boxes).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from t4p.data import s3dis, scannet_votenet, sunrgbd
from t4p.data.classes import class_list
from t4p.data.pairs import build_pairs, save_pairs
from t4p.data.scannet_rgbd import SkipStats, is_exported_scene, read_exported_scene
from t4p.data.scannet_sens import iter_sens
from t4p.io import clean_temporaries, save_npz, write_json

log = logging.getLogger(__name__)

FORMATS = ("scannet-sens", "scannet-rgbd", "s3dis-raw", "scannet-votenet", "sunrgbd")
CACHE_VERSION = 1


@dataclass(frozen=True)
class PrepareSettings:
    frame_skip: int = 25
    image_height: int = 240
    image_width: int = 320
    voxel_size: float = 0.025
    corr_depth_tol: float = 0.02
    label_version: str = "v1"
    classes: str = "s3dis13"  # class list of labelled rooms (s3dis-raw)

    def key(self, fmt: str) -> dict:
        """The settings that change the cache of ``fmt``."""
        if fmt in ("scannet-sens", "scannet-rgbd"):
            return {k: v for k, v in asdict(self).items() if k not in ("label_version", "classes")}
        if fmt == "s3dis-raw":
            return {"classes": self.classes}
        return {"label_version": self.label_version} if fmt == "sunrgbd" else {}


def settings_hash(fmt: str, src: str | Path, settings: PrepareSettings) -> str:
    blob = json.dumps(
        {"fmt": fmt, "src": str(Path(src).resolve()), "v": CACHE_VERSION, **settings.key(fmt)}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- units


def list_units(fmt: str, src: str | Path, settings: PrepareSettings) -> list[str]:
    """Names of the independent pieces of work of a source (relative paths or scene ids)."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder (data source for format {fmt!r})")
    if fmt == "scannet-sens":
        if src.is_file():
            return [src.name]
        files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.sens"))
        if not files:
            raise FileNotFoundError(f"{src}: no .sens files found")
        return files
    if fmt == "scannet-rgbd":
        if is_exported_scene(src):
            return ["."]
        base = src / "scans" if (src / "scans").is_dir() else src
        scenes = sorted(p.relative_to(src).as_posix() for p in base.iterdir() if is_exported_scene(p))
        if not scenes:
            raise FileNotFoundError(f"{src}: no scene folders with color/ depth/ pose/ found")
        return scenes
    if fmt == "s3dis-raw":
        return [f"Area_{a}/{r.name}" for a, r in s3dis.list_rooms(src)]
    if fmt == "scannet-votenet":
        return scannet_votenet.list_scenes(src)
    if fmt == "sunrgbd":
        return sunrgbd.list_scenes(src, settings.label_version)
    raise ValueError(f"unknown data format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _s3dis_room_dir(src: Path, unit: str) -> Path:
    if (src / "Annotations").is_dir():
        return src
    if src.name == unit.split("/")[0]:
        return src / unit.split("/")[1]
    return src / unit


def _frames_unit(
    frames: Iterable, out: Path, scene: str, settings: PrepareSettings, stats: SkipStats
) -> dict:
    hw = (settings.image_height, settings.image_width)
    records = []
    for frame in frames:
        frame.scene = scene
        p = build_pairs(frame, hw, settings.voxel_size, settings.corr_depth_tol)
        rel = f"{scene}/{frame.index:06d}.npz"
        save_pairs(out / rel, p)
        records.append({"file": rel, "frame": frame.index, "voxels": len(p.coords), "pairs": p.num_pairs})
    return {
        "files": [r["file"] for r in records],
        "frames": records,
        **stats.to_dict(),
        "skip_examples": stats.examples,
    }


def prepare_unit(fmt: str, src: str, unit: str, out: str, settings: PrepareSettings) -> dict:
    """Prepare one unit into ``out``; returns its manifest entry. Runs in worker processes."""
    src_p, out_p = Path(src), Path(out)
    if fmt == "scannet-rgbd":
        scene_dir = src_p if unit == "." else src_p / unit
        stats = SkipStats()
        return _frames_unit(
            read_exported_scene(scene_dir, settings.frame_skip, stats), out_p, scene_dir.name, settings, stats
        )
    if fmt == "scannet-sens":
        path = src_p if src_p.is_file() else src_p / unit
        stats = SkipStats()
        return _frames_unit(iter_sens(path, settings.frame_skip, stats), out_p, path.stem, settings, stats)
    if fmt == "s3dis-raw":
        room = s3dis.read_room(_s3dis_room_dir(src_p, unit), classes=class_list(settings.classes))
        rel = f"Area_{room.area}/{room.name}.npz"
        save_npz(out_p / rel, xyz=room.xyz, rgb=room.rgb, labels=room.labels, instances=room.instances)
        return {
            "files": [rel],
            "points": len(room.xyz),
            "repaired_lines": room.repaired,
            "skipped_lines": room.skipped,
            "area": room.area,
        }
    if fmt in ("scannet-votenet", "sunrgbd"):
        if fmt == "scannet-votenet":
            sc = scannet_votenet.read_scene(src_p, unit)
        else:
            sc = sunrgbd.read_scene(src_p, unit, settings.label_version)
        rel = f"{unit}.npz"
        save_npz(
            out_p / rel, xyz=sc.xyz, rgb=sc.rgb, labels=sc.labels, instances=sc.instances, boxes=sc.boxes
        )
        return {"files": [rel], "points": len(sc.xyz), "boxes": len(sc.boxes)}
    raise ValueError(f"unknown data format {fmt!r}; expected one of {', '.join(FORMATS)}")


# --------------------------------------------------------------------------- manifest and driver


def read_manifest(out: str | Path) -> dict:
    path = Path(out) / "manifest.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def is_complete(out: str | Path) -> bool:
    m = read_manifest(out)
    return bool(m) and m.get("complete", False)


@contextlib.contextmanager
def _lock(out: Path):
    """One preparer per cache folder at a time (other processes wait, then find the work done)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _done(manifest: dict, unit: str, out: Path) -> bool:
    entry = manifest.get("units", {}).get(unit)
    return entry is not None and all((out / f).exists() for f in entry["files"])


# (function, jobs) -> (unit, manifest entry) as each job finishes; job[2] is the unit's name
Executor = Callable[[Callable[..., dict], list[tuple]], Iterator[tuple[str, dict]]]


def _run_local(jobs: list[tuple], workers: int) -> Iterator[tuple[str, dict]]:
    if workers <= 1:
        for job in jobs:
            yield job[2], prepare_unit(*job)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(prepare_unit, *job): job[2] for job in jobs}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def prepare(
    fmt: str,
    src: str | Path,
    out: str | Path,
    settings: PrepareSettings | None = None,
    workers: int = 1,
    executor: Executor | None = None,
    progress: bool = True,
) -> dict:
    """Prepare every unit of ``src`` into ``out`` (skipping finished ones); returns the manifest.

    ``executor(prepare_unit, jobs)`` yields ``(unit, entry)`` as jobs finish; default: ``workers``
    processes on this machine.
    """
    settings = settings or PrepareSettings()
    src, out = Path(src), Path(out)
    units = list_units(fmt, src, settings)
    h = settings_hash(fmt, src, settings)
    with _lock(out):
        clean_temporaries(out)
        manifest = read_manifest(out)
        if manifest.get("config_hash") not in (None, h):
            log.warning("%s: cache was prepared with other settings; preparing again", out)
            manifest = {}
        manifest.update(
            {
                "format": fmt,
                "source": str(src.resolve()),
                "config_hash": h,
                "settings": settings.key(fmt),
                "complete": False,
            }
        )
        manifest.setdefault("units", {})
        todo = [u for u in units if not _done(manifest, u, out)]
        if len(todo) < len(units):
            log.info(
                "%s: %d of %d units already prepared, skipping them", out, len(units) - len(todo), len(units)
            )
        jobs = [(fmt, str(src), u, str(out), settings) for u in todo]
        results = executor(prepare_unit, jobs) if executor is not None else _run_local(jobs, workers)
        bar = tqdm(total=len(jobs), desc=f"prepare {fmt}", unit="unit", disable=not progress or not jobs)
        for unit, entry in results:
            manifest["units"][unit] = entry
            write_json(out / "manifest.json", manifest)  # atomic: the unit counts only once recorded
            bar.update(1)
        bar.close()
        manifest["units"] = {u: manifest["units"][u] for u in units}
        manifest["complete"] = True
        manifest["totals"] = totals(fmt, manifest)
        write_json(out / "manifest.json", manifest)
    return manifest


def totals(fmt: str, manifest: dict) -> dict:
    entries = manifest["units"].values()
    if fmt in ("scannet-sens", "scannet-rgbd"):
        skipped: dict[str, int] = {}
        for e in entries:
            for k, v in e["skipped"].items():
                skipped[k] = skipped.get(k, 0) + v
        frames = [f for e in entries for f in e["frames"]]
        return {
            "num_frames": sum(e["num_frames"] for e in entries),
            "selected_frames": len(frames),
            "skipped": skipped,
            "pairs": int(sum(f["pairs"] for f in frames)),
        }
    out = {"points": int(sum(e["points"] for e in entries))}
    if fmt == "s3dis-raw":
        out["repaired_lines"] = sum(len(e["repaired_lines"]) for e in entries)
        out["skipped_lines"] = sum(len(e["skipped_lines"]) for e in entries)
    else:
        out["boxes"] = int(sum(e["boxes"] for e in entries))
    return out


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
