"""Semantic segmentation fine-tuning (S3DIS, Tables 3, 5, 6): cross-entropy on voxels plus the auxiliary loss.

Evaluation: a confusion matrix on the ORIGINAL points (voxel predictions mapped back through
``point2voxel``), summed over DDP ranks; mIoU / mAcc / OA and IoU per class (``t4p.tasks.seg_metrics``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from t4p.config import TASK_TRAITS, Config
from t4p.losses import aux_loss, aux_pseudo_labels
from t4p.models.text4point import Text4PointSeg, needs_text
from t4p.tasks.base import Metric, distributed, flat_scores
from t4p.tasks.seg_metrics import confusion_matrix, segmentation_scores


def semseg_terms(core: nn.Module, batch, out, cfg: Config,
                 gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Cross-entropy on voxels; the auxiliary loss on encoder points (Eq. 15-16) when ``loss.aux``."""
    lc = cfg.loss
    terms = {"loss_seg": nn.functional.cross_entropy(out.logits.float(), batch.labels, ignore_index=lc.ignore_label)}
    if lc.aux:
        terms["loss_aux"] = aux_term(out, batch.coords, batch.labels, cfg)
    return terms


def aux_term(out, coords: torch.Tensor, labels: torch.Tensor, cfg: Config) -> torch.Tensor:
    """The weighted auxiliary loss (Eq. 15-16): encoder points scored against the text embeddings,
    pseudo-labelled from the voxel labels ``labels`` (M,) around each encoder point."""
    lc = cfg.loss
    h3d = out.out3d.h3d
    pseudo = aux_pseudo_labels(
        h3d.coords, h3d.stride, coords, labels, cfg.data.voxel_size, lc.aux_range, lc.ignore_label
    )  # (n,)
    return lc.aux_weight * aux_loss(out.out3d.h3d_hat, out.text, pseudo, lc.aux_tau)


@torch.no_grad()
def evaluate_semseg(core: nn.Module, loader, cfg: Config, device: torch.device, class_names) -> dict:
    """mIoU / mAcc / OA / IoU per class on the original points (nested: ``{"iou": {class: v}}``)."""
    k = len(class_names)
    cm = np.zeros((k, k), dtype=np.int64)
    was_training = core.training
    core.eval()
    with torch.random.fork_rng(devices=[]):  # datasets draw item seeds from torch: keep training's stream intact
        for batch in loader:
            batch = batch.to(device)
            pred = core(batch).logits.argmax(1)  # (M,)
            cm += confusion_matrix(pred[batch.point2voxel], batch.point_labels, k, cfg.loss.ignore_label)
    core.train(was_training)
    if distributed():
        t = torch.from_numpy(cm).to(device)
        torch.distributed.all_reduce(t)
        cm = t.cpu().numpy()
    return segmentation_scores(cm, class_names)


class SemSegTask:
    name = "semseg"
    fine_tuning = TASK_TRAITS["semseg"].fine_tuning
    metrics: tuple[Metric, ...] = (Metric("mIoU", "miou"), Metric("mAcc", "macc"))

    def needs_clip(self, cfg: Config) -> bool:
        return needs_text(cfg)

    def build_model(self, cfg: Config, bundle, class_names: list[str], restoring: bool = False) -> nn.Module:
        return Text4PointSeg(cfg, bundle, class_names)

    def loss_terms(self, core, batch, out, cfg: Config, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return semseg_terms(core, batch, out, cfg, gen)

    def evaluate(self, core, loader, cfg: Config, device: torch.device, class_names: list[str]) -> dict[str, float]:
        return flat_scores(evaluate_semseg(core, loader, cfg, device, class_names))

    def predict(self, core, batch, cfg: Config) -> dict[str, np.ndarray]:
        return {"labels": point_labels(core(batch), batch)}


def point_labels(out, batch) -> np.ndarray:
    """(N,) the predicted class of every original point (its voxel's argmax)."""
    return out.logits.argmax(1)[batch.point2voxel].cpu().numpy()


TASK = SemSegTask()
