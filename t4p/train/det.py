"""Detection fine-tuning and evaluation (VoteNet on SR-UNet, paper Sec. 4.3).

Pieces the main loop can dispatch to (``train.task=det``): ``build_det_model``, ``det_terms`` (same
signature as the loop's per-task terms), ``evaluate_det``. ``train_det(cfg)`` is a compact
single-process loop over the same pieces (seeded, deterministic data order) used by tests and
benchmarks; the distributed path is ``t4p.train.loop.run``.

The optimiser: the paper's detection recipe (lr 0.001, cosine) is VoteNet's Adam setting, so
``finetune.det_optimizer=adam`` (default) builds Adam with the same parameter groups and schedule as
``t4p.train.optim``; ``sgd`` uses ``t4p.train.optim.build_optimizer``.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from t4p.config import Config
from t4p.losses_det import votenet_loss

log = logging.getLogger(__name__)


def class_mean_sizes(boxes: list[np.ndarray | torch.Tensor], num_classes: int) -> torch.Tensor:
    """(K, 3) mean full size per class over the given (n, 8) box arrays; absent classes take the global mean."""
    rows = [torch.as_tensor(np.asarray(b), dtype=torch.float64).reshape(-1, 8) for b in boxes]
    allb = torch.cat(rows) if rows else torch.zeros(0, 8, dtype=torch.float64)
    fallback = allb[:, 3:6].mean(0) if len(allb) else torch.ones(3, dtype=torch.float64)
    out = fallback.repeat(num_classes, 1)
    for k in range(num_classes):
        sel = allb[:, 7] == k
        if sel.any():
            out[k] = allb[sel, 3:6].mean(0)
    return out.float()


def dataset_mean_sizes(dataset, num_classes: int) -> torch.Tensor:
    """Mean sizes from the boxes of a training dataset (its prepared files, no augmentation)."""
    from t4p.data.prepare import load_arrays

    files = getattr(dataset, "files", None)
    if files is None:
        raise ValueError("dataset_mean_sizes: the dataset has no .files (expected t4p.data.datasets.PointsDataset)")
    return class_mean_sizes([load_arrays(f)["boxes"] for f in files], num_classes)


def build_det_model(cfg: Config, train_dataset=None) -> tuple[nn.Module, object | None]:
    """VoteNetDetector for ``cfg`` with mean sizes from ``train_dataset`` (default: ``make_dataset(cfg,
    "train")``) and its CLIP bundle (or None)."""
    from t4p.data.classes import class_list
    from t4p.models.text4point import needs_text
    from t4p.models.votenet import VoteNetDetector

    bundle = None
    if needs_text(cfg):
        from t4p.models.clip import load_clip

        bundle = load_clip(cfg.model.clip)
    names = list(class_list(cfg.data.classes).text_names)
    if train_dataset is None:
        from t4p.data.datasets import make_dataset

        train_dataset = make_dataset(cfg, "train")
    sizes = dataset_mean_sizes(train_dataset, len(names))
    return VoteNetDetector(cfg, bundle, names, sizes), bundle


def det_model_for_loop(cfg: Config, bundle, class_names: list[str]) -> nn.Module:
    """The detector for ``t4p.train.loop.build_model`` (CLIP bundle already loaded there)."""
    from t4p.data.datasets import make_dataset
    from t4p.models.votenet import VoteNetDetector

    sizes = dataset_mean_sizes(make_dataset(cfg, "train"), len(class_names))
    return VoteNetDetector(cfg, bundle, class_names, sizes)


def box_voxel_labels(batch) -> torch.Tensor:
    """(M,) a voxel label from the boxes (class of a box containing its points; -100 outside every box).

    SUN RGB-D has no per-point labels; the auxiliary loss (Eq. 15-16) then takes its pseudo-labels
    from the boxes. Where the dataset has point labels (ScanNet), those are used instead.
    """
    from t4p.models.box_ops import points_in_boxes

    labels = torch.full((batch.coords.shape[0],), -100, dtype=torch.long, device=batch.coords.device)
    scene = batch.coords[batch.point2voxel, 0].long()
    for b, boxes in enumerate(batch.boxes):
        if len(boxes) == 0:
            continue
        rows = (scene == b).nonzero().squeeze(1)
        inside = points_in_boxes(batch.point_xyz[rows], boxes[:, :7].to(batch.point_xyz))  # (n, K)
        hit = inside.any(1)
        cls = boxes[:, 7].long().to(labels.device)[inside.float().argmax(1)]
        labels[batch.point2voxel[rows[hit]]] = cls[hit]
    return labels


def det_terms(core: nn.Module, batch, out, cfg: Config, gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """VoteNet loss terms; plus the auxiliary loss on encoder points (Eq. 15-16) when ``loss.aux``."""
    from t4p.losses import aux_loss, aux_pseudo_labels

    terms = votenet_loss(out, batch.boxes, core.mean_sizes, cfg.finetune)
    lc = cfg.loss
    if lc.aux:
        labels = batch.labels if bool((batch.labels != lc.ignore_label).any()) else box_voxel_labels(batch)
        h3d = out.out3d.h3d
        pseudo = aux_pseudo_labels(
            h3d.coords, h3d.stride, batch.coords, labels, cfg.data.voxel_size, lc.aux_range, lc.ignore_label
        )  # (n,)
        terms["loss_aux"] = lc.aux_weight * aux_loss(out.out3d.h3d_hat, out.text, pseudo, lc.aux_tau)
    return terms


@torch.no_grad()
def evaluate_det(core: nn.Module, loader, cfg: Config, device: torch.device, class_names) -> dict:
    """mAP@0.25/0.5 and per-class AP over ``loader`` (oriented IoU when ``finetune.oriented_boxes``)."""
    from t4p.train.det_metrics import DetEvaluator

    ev = DetEvaluator(list(class_names), oriented=cfg.finetune.oriented_boxes)
    was_training = core.training
    core.eval()
    for batch in loader:
        batch = batch.to(device)
        preds = core.predict(core(batch))
        for pred, gt in zip(preds, batch.boxes, strict=True):
            ev.add(pred, gt)
    core.train(was_training)
    if torch.distributed.is_available() and torch.distributed.is_initialized():  # DDP: every rank's share
        parts = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, (ev.preds, ev.gts))
        ev.preds = [p for preds, _ in parts for p in preds]
        ev.gts = [g for _, gts in parts for g in gts]
    return ev.compute()


def flat_det_scores(scores: dict, split: str) -> dict:
    """``{split}_map@0.25``, ``{split}_map@0.5`` and ``{split}_ap@0.5/<class>`` as plain numbers."""
    out = {}
    for key, value in scores.items():
        if key.startswith("map@"):
            out[f"{split}_{key}"] = value
        else:
            out.update({f"{split}_{key}/{name}": v for name, v in value.items()})
    return out


def build_det_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    from t4p.train.optim import build_optimizer, decay_groups

    if cfg.finetune.det_optimizer == "sgd":
        return build_optimizer(model, cfg.optim)
    return torch.optim.Adam(decay_groups(model, cfg.optim), lr=cfg.optim.lr)


def _batches(n: int, batch_size: int, steps: int, seed: int):
    """Index lists for ``steps`` steps: epoch-wise permutations seeded by (seed, epoch)."""
    pos, epoch, perm = 0, 0, None
    for _ in range(steps):
        idx = []
        while len(idx) < batch_size:
            if perm is None or pos == n:
                perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
                pos, epoch = 0, epoch + 1
            idx.append(perm[pos])
            pos += 1
        yield idx


def train_det(cfg: Config, eval_split: str | None = None, device: str | torch.device = "cpu") -> dict:
    """Train VoteNet for ``train.max_steps`` single-process and evaluate on ``eval_split`` (default
    ``finetune.eval_split``); returns the last loss terms, the step time and the flat mAP scores."""
    from t4p.data.classes import class_list
    from t4p.data.datasets import make_dataset
    from t4p.train.loop import seed_everything
    from t4p.train.optim import build_scheduler

    seed_everything(cfg.train.seed)
    device = torch.device(device)
    train_ds = make_dataset(cfg, "train")
    split = eval_split or cfg.finetune.eval_split
    eval_ds = make_dataset(cfg, split)
    model, _ = build_det_model(cfg, train_ds)
    model.to(device).train()
    opt = build_det_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg.optim, cfg.train.max_steps)
    terms: dict[str, float] = {}
    start = time.perf_counter()
    bar = tqdm(_batches(len(train_ds), cfg.train.batch_size, cfg.train.max_steps, cfg.train.seed),
               total=cfg.train.max_steps, desc="det", leave=False)
    for step, idx in enumerate(bar):
        batch = train_ds.collate([train_ds[i] for i in idx]).to(device)
        out = model(batch)
        parts = det_terms(model, batch, out, cfg)
        loss = sum(parts.values())
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"step {step}: detection loss is {loss.item()} ({parts}); lower optim.lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        sched.step()
        terms = {k: float(v.detach()) for k, v in parts.items()}
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % cfg.train.log_every == 0:
            log.info("det step %d loss %.4f %s", step + 1, loss.item(), terms)
    train_time = time.perf_counter() - start
    loader = [eval_ds.collate([eval_ds[j] for j in range(i, min(i + cfg.train.batch_size, len(eval_ds)))])
              for i in range(0, len(eval_ds), cfg.train.batch_size)]
    names = list(class_list(cfg.data.classes).names)
    scores = evaluate_det(model, loader, cfg, device, names)
    if cfg.data.classes in ("sunrgbd10", "scannet18"):  # the paper's Table 7 / 8 layout, ours last
        from t4p.paper import DETECTION_TABLES, per_class_table

        ours = {n: 100 * v for n, v in scores["ap@0.5"].items()}
        table = per_class_table(DETECTION_TABLES[cfg.data.classes], {"t4p (this run)": (ours, 100 * scores["map@0.5"])})
        log.info("AP@0.5 per class (%s):\n%s", split, table)
    return {"terms": terms, "train_seconds": train_time, "scores": scores, **flat_det_scores(scores, split),
            "model": model}
