"""Instance-segmentation fine-tuning pieces (Table 2): model, loss terms, evaluation, a compact trainer.

``insseg_terms`` and ``evaluate_insseg`` have the signatures of ``t4p.train.loop``'s semantic
segmentation pieces, so the main loop runs ``train.task=insseg`` by dispatching here.
``train_insseg(cfg)`` is a short single-process loop over the same shared pieces (model,
optimiser, schedule, datasets) for tests and notebooks.

Loss: cross-entropy on voxels + the auxiliary loss (Eq. 15-16, when ``loss.aux``) exactly as
semantic segmentation, plus ``finetune.offset_weight`` x (L1 + direction) offset loss (PointGroup).
Evaluation clusters each scene's original points (``finetune.cluster_radius``,
``finetune.cluster_min_points``) and scores them with ``t4p.train.instance_metrics``.
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from t4p.config import Config, validate
from t4p.models.instance import offset_loss, predict_scene_instances
from t4p.train.instance_metrics import InstanceEvaluator, Proposals

log = logging.getLogger(__name__)


def build_insseg_model(cfg: Config) -> tuple[nn.Module, object | None]:
    """``Text4PointInsSeg`` for ``cfg`` and the CLIP bundle it uses (None when it needs none)."""
    from t4p.data.classes import class_list
    from t4p.models.instance import Text4PointInsSeg
    from t4p.models.text4point import needs_text

    bundle = None
    if needs_text(cfg):
        from t4p.models.clip import load_clip

        bundle = load_clip(cfg.model.clip)
    return Text4PointInsSeg(cfg, bundle, list(class_list(cfg.data.classes).text_names)), bundle


def insseg_terms(core: nn.Module, batch, out, cfg: Config, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Semantic terms (cross-entropy, auxiliary loss) + weighted offset terms."""
    from t4p.train.loop import semseg_terms

    terms = semseg_terms(core, batch, out, cfg, gen)
    w = cfg.finetune.offset_weight
    terms.update({k: w * v for k, v in offset_loss(out.offsets, batch).items()})
    return terms


def instance_evaluator(cfg: Config, class_names) -> InstanceEvaluator:
    """The evaluator of ``cfg``: proposals and GT below ``finetune.min_region_size`` points are dropped."""
    return InstanceEvaluator(list(class_names), min_region_size=cfg.finetune.min_region_size)


@torch.no_grad()
def evaluate_insseg(core: nn.Module, loader, cfg: Config, device: torch.device, class_names) -> dict:
    """Cluster every scene of ``loader`` and score AP / mPrec / mRec on its original points."""
    f = cfg.finetune
    ev = instance_evaluator(cfg, class_names)
    was_training = core.training
    core.eval()
    for batch in loader:
        batch = batch.to(device)
        out = core(batch)
        sample = batch.coords[batch.point2voxel, 0]  # (Np,)
        for b in range(len(batch.scene_ids)):
            mine = sample == b
            cl = predict_scene_instances(out, batch, b, f.cluster_radius, f.cluster_min_points)
            ev.add_scene(batch.point_labels[mine].cpu().numpy(), batch.point_instances[mine].cpu().numpy(),
                         Proposals.from_point_ids(cl.ids, cl.labels, cl.scores))
    core.train(was_training)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, ev.scenes)
        ev.scenes = [s for part in gathered for s in part]
    return ev.compute()


def fit_insseg(cfg: Config) -> tuple[nn.Module, list[float], float]:
    """Single-process fine-tuning for ``train.max_steps`` steps: (model, loss per step, seconds)."""
    from t4p.data.datasets import make_dataset
    from t4p.train.loop import StepBatchSampler, pair_generator, seed_everything
    from t4p.train.optim import build_optimizer, build_scheduler

    validate(cfg)
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    seed_everything(cfg.train.seed)
    model, _bundle = build_insseg_model(cfg)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, cfg.train.max_steps)
    train_ds = make_dataset(cfg, "train")
    sampler = StepBatchSampler(len(train_ds), cfg, 0, 1, 0)
    loader = torch.utils.data.DataLoader(train_ds, batch_sampler=sampler, collate_fn=train_ds.collate)
    model.train()
    history: list[float] = []
    t0 = time.perf_counter()
    for step, batch in enumerate(loader):  # one micro-batch per step (train.grad_accum = 1 here)
        optimizer.zero_grad(set_to_none=True)
        terms = insseg_terms(model, batch, model(batch), cfg, pair_generator(cfg, step, 0, 0))
        loss = sum(terms.values())
        loss.backward()
        optimizer.step()
        scheduler.step()
        history.append(float(loss.detach()))
        if (step + 1) % cfg.train.log_every == 0:
            log.info("insseg step %d loss %.4f %s", step + 1, history[-1],
                     " ".join(f"{k}={float(v.detach()):.3f}" for k, v in terms.items()))
    return model, history, time.perf_counter() - t0


def train_insseg(cfg: Config, eval_split: str | None = None) -> dict:
    """``fit_insseg`` then ``evaluate_insseg`` on ``eval_split`` (default ``finetune.eval_split``)."""
    from t4p.data.classes import class_list
    from t4p.data.datasets import make_dataset

    model, history, train_s = fit_insseg(cfg)
    split = eval_split or cfg.finetune.eval_split
    eval_ds = make_dataset(cfg, split)
    eval_loader = torch.utils.data.DataLoader(eval_ds, batch_size=1, collate_fn=eval_ds.collate)
    names = list(class_list(cfg.data.classes).names)
    scores = evaluate_insseg(model, eval_loader, cfg, torch.device("cpu"), names)
    return {**scores, "loss_history": history, "train_seconds": train_s}
