"""Cost of the 2D side of a pre-training epoch with and without the dense feature cache.

A small synthetic epoch (random 240x320 "frames" with random depth) runs the frozen CLIP dense
encoder (Eq. 1) plus the trainable 2D decoder (forward, depth loss, backward, SGD step), twice:

- no cache: every epoch runs the frozen encoder on every frame;
- cache: epoch 1 encodes and stores fp16 features, later epochs only read them.

Prints JSON: per model, seconds per epoch (split into encoder and decoder parts), the ratio
cached/uncached for epochs after the first, and the cache's bytes per frame.

    .venv/bin/python bench/clip_cache.py --models tiny,rn50 --frames 16 --batch 4 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time

import torch

from t4p.config import ClipConfig
from t4p.models.clip import DenseImageEncoder, load_clip
from t4p.models.decoder_2d import Decoder2D, depth_loss
from t4p.models.feature_cache import FeatureCache

MODELS = {"tiny": ClipConfig(weights="random-tiny"), "rn50": ClipConfig(arch="RN50", weights="random")}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_epoch(enc, dec, opt, frames, cache: FeatureCache | None, batch: int, device) -> dict[str, float]:
    """One pass over the frames: wall and CPU seconds (all threads of this process) of both parts."""
    t = {"encoder_s": 0.0, "decoder_s": 0.0, "encoder_cpu_s": 0.0, "decoder_cpu_s": 0.0}
    for i in range(0, len(frames["ids"]), batch):
        ids = frames["ids"][i:i + batch]
        images = frames["images"][i:i + batch].to(device)  # (B, 3, H, W)
        depth = frames["depth"][i:i + batch].to(device)  # (B, 1, H, W)
        _sync(device)
        w0, c0 = time.perf_counter(), time.process_time()
        feats = cache.get_or_compute(ids, images, enc) if cache else enc(images)  # (B, d, h, w)
        _sync(device)
        w1, c1 = time.perf_counter(), time.process_time()
        z2d, pred = dec(feats, out_size=images.shape[2:])  # (B, C, H, W), (B, 1, H, W)
        loss = depth_loss(pred, depth) + z2d.pow(2).mean() * 1e-3  # stand-in for the InfoNCE term
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        w2, c2 = time.perf_counter(), time.process_time()
        t["encoder_s"] += w1 - w0
        t["decoder_s"] += w2 - w1
        t["encoder_cpu_s"] += c1 - c0
        t["decoder_cpu_s"] += c2 - c1
    t["total_s"] = t["encoder_s"] + t["decoder_s"]
    t["total_cpu_s"] = t["encoder_cpu_s"] + t["decoder_cpu_s"]
    return t


def bench_model(name: str, args, device) -> dict:
    bundle = load_clip(MODELS[name])
    enc = DenseImageEncoder(bundle, fp16=True).to(device)
    gen = torch.Generator().manual_seed(0)
    h, w = args.height, args.width
    frames = {
        "ids": [f"synthetic/scene{i // 8:04d}/{i % 8 * 25:06d}" for i in range(args.frames)],
        "images": torch.randn(args.frames, 3, h, w, generator=gen),
        "depth": (torch.rand(args.frames, 1, h, w, generator=gen) * 4 + 0.5),
    }
    out: dict = {"model": bundle.describe(), "weights_id": bundle.weights_id, "embed_dim": bundle.embed_dim}
    for mode in ("no_cache", "cache"):
        torch.manual_seed(0)
        dec = Decoder2D(bundle.embed_dim, args.channels).to(device)
        opt = torch.optim.SGD(dec.parameters(), lr=0.01)
        with tempfile.TemporaryDirectory() as root:
            cache = FeatureCache(root, enc.cache_id) if mode == "cache" else None
            epochs = [run_epoch(enc, dec, opt, frames, cache, args.batch, device) for _ in range(args.epochs)]
            if cache is not None:
                out["cache_bytes_per_frame"] = cache.bytes_per_frame((h, w))
                out["cache_hits"], out["cache_misses"] = cache.hits, cache.misses
        out[mode] = {"epochs": [{k: round(v, 4) for k, v in e.items()} for e in epochs]}
    later = slice(1, None)  # epochs after the first

    def mean(mode: str, key: str) -> float:
        vals = [e[key] for e in out[mode]["epochs"][later]]
        return sum(vals) / len(vals)

    for unit in ("", "_cpu"):
        for part in ("total", "encoder"):
            key = f"{part}{unit}_s"
            out[f"later_epoch_{part}{unit}_ratio_cache_over_no_cache"] = round(
                mean("cache", key) / mean("no_cache", key), 4)
        out[f"first_epoch_cache_overhead{unit}_s"] = round(
            out["cache"]["epochs"][0][f"encoder{unit}_s"] - out["no_cache"]["epochs"][0][f"encoder{unit}_s"], 4)
    with torch.no_grad():
        out["grid"] = list(enc(frames["images"][:1].to(device)).shape[2:])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny,rn50")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--channels", type=int, default=96, help="model.decoder_2d_channels")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the cache pays off after the first)")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else -1.0
    report = {
        "bench": "clip_cache",
        "note": "CPU seconds are robust to other processes on the machine; wall seconds are not",
        "load_average_1min_at_start": round(load, 2),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                    "torch": torch.__version__},
        "setup": {k: getattr(args, k) for k in ("frames", "batch", "epochs", "height", "width", "channels")},
        "results": {m: bench_model(m, args, device) for m in args.models.split(",")},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
