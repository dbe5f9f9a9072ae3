"""Benchmark: 2D-3D pair preparation speed and memory; ``.sens`` decoding memory. Prints JSON.

1. Synthetic rooms in the ScanNet exported layout (ray-cast RGB-D frames) are prepared into
   pair caches with 1 and N worker processes: frames (2D-3D pairs) per second per worker,
   pixel-voxel correspondences per second, and peak memory (tracemalloc in-process for
   1 worker; max RSS of the process tree).
2. A ``.sens`` file is written from those frames and read with ``frame_skip``; the peak of
   traced memory beyond the selected, decoded frames kept by the caller is compared with one
   frame's raw (compressed) and decoded size: the reader holds at most one frame at a time.

Usage: python bench/data_pairs.py [--scenes 2] [--frames 8] [--workers 2] [--sens-frames 100]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

from t4p.data.prepare import PrepareSettings, prepare
from t4p.data.scannet_rgbd import read_exported_scene
from t4p.data.scannet_sens import iter_sens, write_sens
from t4p.data.synthetic import SynthSettings, generate


def _prepare_run(src: Path, out: Path, settings: PrepareSettings, workers: int, trace: bool) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    if trace:
        tracemalloc.start()
    t, cpu = time.perf_counter(), time.process_time()
    m = prepare("scannet-rgbd", src, out, settings, workers=workers, progress=False)
    dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1] if trace else None
    if trace:
        tracemalloc.stop()
    frames, pairs = m["totals"]["selected_frames"], m["totals"]["pairs"]
    return {
        "workers": workers,
        "frames": frames,
        "seconds": round(dt, 3),
        "frames_per_s_per_worker": round(frames / dt / workers, 2),
        # in-process CPU time (meaningful for 1 worker; a busy shared machine inflates wall time)
        "frames_per_cpu_s": round(frames / cpu, 2) if workers == 1 else None,
        "correspondences_per_s": round(pairs / dt),
        "mean_correspondences_per_frame": round(pairs / max(frames, 1)),
        "peak_traced_mb": None if peak is None else round(peak / 2**20, 1),
    }


def _sens_memory(scene: Path, path: Path, n_frames: int, frame_skip: int) -> dict:
    frames = list(read_exported_scene(scene, frame_skip=1))
    jpegs, depths, poses = [], [], []
    for k in range(n_frames):
        f = frames[k % len(frames)]
        buf = io.BytesIO()
        Image.fromarray(f.color).save(buf, format="JPEG", quality=92)
        jpegs.append(buf.getvalue())
        depths.append(np.rint(f.depth * 1000).astype(np.uint16))
        poses.append(f.pose)
    h, w = depths[0].shape
    write_sens(path, jpegs, depths, poses, frames[0].K_color, frames[0].K_depth, (w, h))
    size = path.stat().st_size
    tracemalloc.start()
    kept, kept_bytes = [], 0
    for fr in iter_sens(path, frame_skip=frame_skip):
        kept.append(fr)
        kept_bytes += fr.color.nbytes + fr.depth.nbytes + fr.pose.nbytes
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    raw_frame = max(len(j) for j in jpegs) + max(d.nbytes for d in depths)  # compressed colour + raw depth
    decoded_frame = h * w * 3 + h * w * 4 + h * w * 2  # colour + float32 depth + uint16 buffer
    beyond = peak - kept_bytes
    return {
        "sens_bytes": size,
        "frames": n_frames,
        "frame_skip": frame_skip,
        "selected": len(kept),
        "selected_bytes": kept_bytes,
        "peak_traced_bytes": peak,
        "peak_beyond_selected_bytes": beyond,
        "one_frame_raw_plus_decode_bytes": raw_frame + decoded_frame,
        "holds_at_most_one_frame": bool(beyond <= raw_frame + 2 * decoded_frame),
        "peak_beyond_selected_over_file": round(beyond / size, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenes", type=int, default=2)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--voxel-size", type=float, default=0.025)
    ap.add_argument("--sens-frames", type=int, default=100)
    ap.add_argument("--frame-skip", type=int, default=25)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="t4p-bench-"))
    try:
        t = time.perf_counter()
        root = generate(tmp / "synth", SynthSettings(scenes=args.scenes, frames_per_scene=args.frames))
        gen_s = time.perf_counter() - t
        settings = PrepareSettings(frame_skip=1, voxel_size=args.voxel_size)
        src = root / "scannet"
        runs = [_prepare_run(src, tmp / "p1", settings, 1, trace=True)]
        if args.workers > 1:
            runs.append(_prepare_run(src, tmp / "pn", settings, args.workers, trace=False))
        sens = _sens_memory(src / "scans" / "scene0000_00", tmp / "s.sens", args.sens_frames, args.frame_skip)
        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ru_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(json.dumps({
            "machine": {"cpus": os.cpu_count()},
            "image_hw": [240, 320],
            "voxel_size": args.voxel_size,
            "synthetic_generation_s": round(gen_s, 2),
            "prepare": runs,
            "max_rss_mb": round(ru / 1024, 1),
            "max_rss_children_mb": round(ru_children / 1024, 1),
            "sens_decoding": sens,
        }, indent=1))  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
