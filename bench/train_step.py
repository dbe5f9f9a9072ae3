"""Training-step time of pre-training and fine-tuning, split into data, 2D, 3D, TQM, loss, backward.

    python bench/train_step.py [--steps 5] [--backends torch,minkowski] [--pretrain smoke_pretrain]
                               [--finetune smoke_semseg] [KEY=VALUE ...]

Prints one JSON object: {"<backend>": {"pretrain": {...seconds per step...}, "finetune": {...}}}.
A backend that cannot run here is reported with the reason. The forward is the models' own
pieces called one by one (the same code as ``Text4PointPretrain.forward`` / ``Text4PointSeg.forward``),
timed with CUDA synchronisation on GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections import defaultdict

import torch

from t4p.config import task_traits
from t4p.recipes import get_recipe
from t4p.tasks import get_task
from t4p.train import loop
from t4p.train.optim import build_optimizer


class Timer:
    def __init__(self, device: torch.device):
        self.device, self.sums = device, defaultdict(float)

    def mark(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def add(self, key: str, since: float) -> float:
        now = self.mark()
        self.sums[key] += now - since
        return now


def _forward_3d(core, batch, text, timer, t):
    """The 3D part split into 3D (SR-UNet) and TQM (FC_expand + TQM)."""
    from t4p.models.text4point import Out3D

    bb = core.backbone
    x = core.backend.tensor(batch.coords, batch.feats)
    h3d, skips = bb.unet.encode(x)
    t = timer.add("3d", t)
    h_hat = bb.fc_expand(h3d.feats) if bb.fc_expand is not None else None
    h_in = h3d.with_feats(bb.tqm(h3d.feats, h_hat, text)) if bb.tqm is not None else h3d
    t = timer.add("tqm", t)
    z3d = bb.unet.decode(h_in, skips).feats
    t = timer.add("3d", t)
    return Out3D(h3d=h3d, h3d_hat=h_hat, z3d=z3d), t


def _step(cfg, core, batch, timer, t, step):
    from t4p.models.text4point import PretrainOutput, SegOutput

    if not task_traits(cfg).fine_tuning:  # pre-training: 2D (frozen CLIP + g2D) and 3D
        with torch.no_grad():
            h2d = core.encode_images(batch).float()
        z2d, depth = core.decoder_2d(h2d, out_size=tuple(batch.images.shape[2:]))
        t = timer.add("2d", t)
        text = core.text() if core.text is not None else None
        t = timer.add("tqm", t)
        out3d, t = _forward_3d(core, batch, text, timer, t)
        z3d = core.proj_3d(out3d.z3d) if core.proj_3d is not None else out3d.z3d
        out = PretrainOutput(h2d=h2d, z2d=z2d, depth=depth, out3d=out3d, z3d=z3d)
    else:
        text = core.text() if core.text is not None else None
        t = timer.add("tqm", t)
        out3d, t = _forward_3d(core, batch, text, timer, t)
        out = SegOutput(logits=core.head(out3d.z3d), out3d=out3d, text=text)
        t = timer.add("3d", t)
    terms = get_task(cfg.train.task).loss_terms(core, batch, out, cfg, loop.pair_generator(cfg, step, 0, 0))
    t = timer.add("loss", t)
    return sum(terms.values()), t


def bench_task(recipe: str, backend: str, steps: int, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = get_recipe(recipe, [f"model.sparse_backend={backend}", f"train.out_dir={tmp}", *overrides])
        loop.seed_everything(cfg.train.seed)
        device = loop.pick_device(cfg, None)
        core, _ = loop.build_model(cfg)
        core.to(device).train()
        opt = build_optimizer(core, cfg.optim)
        from t4p.data.datasets import make_dataset

        ds = make_dataset(cfg, "train")
        sampler = loop.StepBatchSampler(len(ds), cfg, 0, 1, 0)
        it = iter(torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=ds.collate))
        timer = Timer(device)
        for step in range(steps + 1):  # step 0 warms up (kernel maps, caches) and is not counted
            if step == 1:
                timer.sums.clear()
            t = timer.mark()
            batch = next(it).to(device)
            t = timer.add("data", t)
            loss, t = _step(cfg, core, batch, timer, t, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            timer.add("backward", t)
        per_step = {k: v / steps for k, v in timer.sums.items()}
        per_step["total"] = sum(per_step.values())
        return {
            "recipe": recipe,
            "batch_size": cfg.train.batch_size,
            "voxels_last_batch": int(len(batch.coords)),
            "seconds_per_step": per_step,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--backends", default="torch,minkowski")
    p.add_argument("--pretrain", default="smoke_pretrain")
    p.add_argument("--finetune", default="smoke_semseg")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = p.parse_args(argv)
    result: dict = {
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        }
    }
    for backend in args.backends.split(","):
        if backend == "minkowski":
            from t4p.sparse import minkowski_available

            if not minkowski_available():
                result[backend] = {"skipped": "MinkowskiEngine is not importable"}
                continue
        result[backend] = {
            "pretrain": bench_task(args.pretrain, backend, args.steps, args.overrides),
            "finetune": bench_task(args.finetune, backend, args.steps, args.overrides),
        }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
