"""Benchmark one full SR-UNet34 training step (forward, backward, SGD) on each sparse backend.

Scenes (procedural, the rooms of t4p.data.synthetic): an S3DIS-sized room at 5 cm (~53k voxels)
and the points one 240x320 pre-training frame sees at 2.5 cm (~16k voxels). Every backend/scene
runs in its own subprocess, so its peak resident memory (ru_maxrss) is its own. Kernel maps are
rebuilt every step (a new input tensor, hence a new coordinate set, per step). Prints JSON.

    python bench/sparse_backbone.py [--quick] [--threads 2] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SCENES = {
    "room_5cm": dict(kind="room", voxel_size=0.05, density=1600.0),
    "frame_2.5cm": dict(kind="frame", voxel_size=0.025, hw=(240, 320)),
}
QUICK_SCENES = {
    "room_10cm": dict(kind="room", voxel_size=0.10, density=400.0),
    "frame_5cm": dict(kind="frame", voxel_size=0.05, hw=(120, 160)),
}


def scene_tensors(spec: dict):
    import numpy as np
    import torch

    from t4p.data.synthetic import frame_points, room_points
    from t4p.sparse.voxelize import voxelize

    kwargs = {k: v for k, v in spec.items() if k not in ("kind", "voxel_size")}
    xyz = (room_points if spec["kind"] == "room" else frame_points)(**kwargs)
    vox = voxelize(xyz, spec["voxel_size"])
    coords = np.concatenate([np.zeros((len(vox.coords), 1), np.int32), vox.coords], 1)  # (M, 4)
    colours = np.random.default_rng(0).random((len(coords), 3)).astype(np.float32) - 0.5  # (M, 3)
    labels = np.random.default_rng(1).integers(0, 13, len(coords))
    return torch.from_numpy(coords), torch.from_numpy(colours), torch.from_numpy(labels)


def worker(args) -> dict:
    """One backend on one scene: warm-up step, then `repeats` timed steps."""
    import torch

    from t4p.config import ModelConfig
    from t4p.models.sr_unet import SRUNet

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = (QUICK_SCENES if args.quick else SCENES)[args.scene]
    coords, colours, labels = scene_tensors(spec)
    device = torch.device(args.device)
    net = SRUNet(ModelConfig(sparse_backend=args.backend), in_channels=3).to(device)
    head = torch.nn.Linear(net.out_channels, 13).to(device)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    labels = labels.to(device)
    rss_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    cpu_times = []

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        x = net.backend.tensor(coords, colours, device=device)  # new coordinates: maps rebuilt
        z = net(x)
        loss = torch.nn.functional.cross_entropy(head(z.feats), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        cpu_times.append((time.process_time() - cpu_start) * 1000.0)
        return (time.perf_counter() - start) * 1000.0

    step()  # warm-up
    times = [step() for _ in range(args.repeats)]
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "backend": args.backend,
        "scene": args.scene,
        "n_voxels": len(coords),
        "median_ms": statistics.median(times),
        "times_ms": [round(t, 1) for t in times],
        "median_cpu_ms": statistics.median(cpu_times[1:]),  # process CPU time (all threads), no warm-up
        "peak_rss_mb": rss_peak / 1024.0,
        "step_rss_growth_mb": (rss_peak - rss_setup) / 1024.0,
    }
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_subprocess(args, backend: str, scene: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--backend", backend, "--scene", scene,
           "--threads", str(args.threads), "--repeats", str(args.repeats), "--device", args.device]
    if args.quick:
        cmd.append("--quick")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"backend": backend, "scene": scene, "error": proc.stderr.strip().splitlines()[-5:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scenes, one timed step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backends", default="torch,minkowski")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, repo)
    if args.worker:
        print(json.dumps(worker(args)))
        return

    me_available = importlib.util.find_spec("MinkowskiEngine") is not None
    backends = [b for b in args.backends.split(",") if b != "minkowski" or me_available]
    report = {
        "threads": args.threads,
        "device": args.device,
        "repeats": args.repeats,
        "quick": args.quick,
        "minkowski": "measured" if me_available else "absent (MinkowskiEngine not importable)",
        "spconv": "measured" if False else (
            "absent (not installed)" if importlib.util.find_spec("spconv") is None else "installed, not timed"
        ),
        "kernel_maps": "rebuilt every step",
        "results": {},
    }
    scenes = QUICK_SCENES if args.quick else SCENES
    for scene in scenes:
        rows = {b: run_subprocess(args, b, scene) for b in backends}
        if "median_ms" in rows.get("torch", {}) and "median_ms" in rows.get("minkowski", {}):
            rows["ratio_torch_over_minkowski"] = rows["torch"]["median_ms"] / rows["minkowski"]["median_ms"]
            rows["speedup_torch_vs_minkowski"] = 1.0 / rows["ratio_torch_over_minkowski"]
            rows["cpu_time_ratio_torch_over_minkowski"] = (
                rows["torch"]["median_cpu_ms"] / rows["minkowski"]["median_cpu_ms"]
            )
        report["results"][scene] = rows
        print(json.dumps({scene: rows}), file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
