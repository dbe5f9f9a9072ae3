"""Time one VoteNet training step and its split (backbone, voting, proposal, loss) per sparse backend.

Prints JSON: for each backend (``torch``, and ``minkowski`` when MinkowskiEngine imports) the median
over ``--steps`` timed steps (after ``--warmup``) of the forward stages, the loss and the backward +
optimiser step, in milliseconds. Stages are timed with device synchronisation. Defaults: the
``smoke_det`` recipe (reduced backbone, synthetic scenes); ``--recipe votenet_sunrgbd --full`` gives
the paper's backbone with 20k points.

    python bench/votenet_step.py [--recipe smoke_det] [--device cpu|cuda] [--batch 2] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(model, batch, cfg, optimizer, device) -> dict[str, float]:
    from t4p.models.votenet import DetOutput, split_head
    from t4p.tasks.det import det_terms

    t = {}
    _sync(device)
    t0 = time.perf_counter()
    out3d, text = model.run_backbone(batch)
    _sync(device)
    t1 = time.perf_counter()
    seed_xyz, seed_feats = model.sample_seeds(batch, out3d.z3d)
    vote_xyz, vote_feats = model.vote(seed_xyz, seed_feats)
    _sync(device)
    t2 = time.perf_counter()
    centres, raw = model.proposal(vote_xyz, vote_feats)
    parts = split_head(raw, centres, model.num_heading_bins, model.mean_sizes.shape[0])
    out = DetOutput(seed_xyz=seed_xyz, vote_xyz=vote_xyz, centres=centres, out3d=out3d, text=text, **parts)
    _sync(device)
    t3 = time.perf_counter()
    loss = sum(det_terms(model, batch, out, cfg).values())
    _sync(device)
    t4 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    _sync(device)
    t5 = time.perf_counter()
    t["backbone_ms"], t["voting_ms"], t["proposal_ms"] = (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3
    t["loss_ms"], t["backward_ms"], t["step_ms"] = (t4 - t3) * 1e3, (t5 - t4) * 1e3, (t5 - t0) * 1e3
    return t


def bench_backend(backend: str, args) -> dict:
    from t4p.data.datasets import make_dataset
    from t4p.recipes import get_recipe
    from t4p.train.loop import build_model
    from t4p.train.optim import build_optimizer

    overrides = [f"model.sparse_backend={backend}", f"train.out_dir={args.out_dir}", "data.augment=false"]
    if args.recipe != "smoke_det":  # real recipes read real data; the bench runs them on synthetic scenes
        overrides += ["data.dataset=synthetic", "data.root=", "model.clip.weights=random-tiny"]
    cfg = get_recipe(args.recipe, overrides + list(args.set))
    device = torch.device(args.device)
    ds = make_dataset(cfg, "train")
    model, _ = build_model(cfg)
    model.to(device).train()
    opt = build_optimizer(model, cfg.optim)
    batch = ds.collate([ds[i % len(ds)] for i in range(args.batch)]).to(device)
    times = [time_step(model, batch, cfg, opt, device) for _ in range(args.warmup + args.steps)][args.warmup :]
    med = {k: round(statistics.median(t[k] for t in times), 2) for k in times[0]}
    return {"backend": backend, "voxels": int(batch.coords.shape[0]), "points": int(batch.point_xyz.shape[0]),
            **med}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="smoke_det")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    p.add_argument("--out-dir", default="runs/bench_votenet")
    p.add_argument("--set", nargs="*", default=[], help="extra KEY=VALUE config overrides")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from t4p.sparse import minkowski_available

    backends = ["torch"] + (["minkowski"] if minkowski_available() else [])
    results = [bench_backend(b, args) for b in backends]
    if "minkowski" not in backends:
        results.append({"backend": "minkowski", "skipped": "MinkowskiEngine is not importable"})
    info = {"device": str(args.device), "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "recipe": args.recipe,
            "batch": args.batch, "steps": args.steps}
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    print(json.dumps({"info": info, "results": results}, indent=2))


if __name__ == "__main__":
    main()
