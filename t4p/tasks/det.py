"""Detection fine-tuning (VoteNet on SR-UNet, Sec. 4.3; Tables 7, 8).

Loss: VoteNet's terms (``t4p.models.votenet_loss``, weights ``det.*``) plus the auxiliary loss on encoder points
(Eq. 15-16) when ``loss.aux``; SUN RGB-D has no point labels, so its pseudo-labels come from the boxes.
Evaluation: AP per class at 3D IoU 0.25 and 0.5 (``t4p.tasks.det_metrics``, oriented IoU when
``det.oriented_boxes``). The class mean sizes the box head regresses against come from the training
split's boxes. The optimiser is ``optim.name`` (the recipes: Adam, VoteNet's).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from t4p.config import TASK_TRAITS, Config
from t4p.data.datasets import make_dataset
from t4p.data.prepare import load_arrays
from t4p.models.box_ops import points_in_boxes
from t4p.models.text4point import needs_text
from t4p.models.votenet import VoteNetDetector
from t4p.models.votenet_loss import votenet_loss
from t4p.tasks.base import Metric, distributed, flat_scores
from t4p.tasks.det_metrics import DetEvaluator
from t4p.tasks.semseg import aux_term


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
    files = getattr(dataset, "files", None)
    if files is None:
        raise ValueError("dataset_mean_sizes: the dataset has no .files (expected t4p.data.datasets.PointsDataset)")
    return class_mean_sizes([load_arrays(f)["boxes"] for f in files], num_classes)


def box_voxel_labels(batch) -> torch.Tensor:
    """(M,) a voxel label from the boxes (class of a box containing its points; -100 outside every box).

    SUN RGB-D has no per-point labels; the auxiliary loss (Eq. 15-16) then takes its pseudo-labels
    from the boxes. Where the dataset has point labels (ScanNet), those are used instead.
    """
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


def det_terms(core: VoteNetDetector, batch, out, cfg: Config,
              gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """VoteNet loss terms; plus the auxiliary loss on encoder points (Eq. 15-16) when ``loss.aux``."""
    terms = votenet_loss(out, batch.boxes, core.mean_sizes, cfg.det)
    if cfg.loss.aux:
        has_labels = bool((batch.labels != cfg.loss.ignore_label).any())
        terms["loss_aux"] = aux_term(out, batch.coords, batch.labels if has_labels else box_voxel_labels(batch), cfg)
    return terms


@torch.no_grad()
def evaluate_det(core: VoteNetDetector, loader, cfg: Config, device: torch.device, class_names) -> dict:
    """mAP@0.25/0.5 and per-class AP over ``loader`` (nested: ``{"map50": x, "ap50": {class: ap}, ...}``)."""
    ev = DetEvaluator(list(class_names), oriented=cfg.det.oriented_boxes)
    was_training = core.training
    core.eval()
    for batch in loader:
        batch = batch.to(device)
        preds = core.predict(core(batch))
        for pred, gt in zip(preds, batch.boxes, strict=True):
            ev.add(pred, gt)
    core.train(was_training)
    if distributed():  # DDP: every rank's share
        parts: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, (ev.preds, ev.gts))
        ev.preds = [p for preds, _ in parts for p in preds]
        ev.gts = [g for _, gts in parts for g in gts]
    return ev.compute()


class DetTask:
    name = "det"
    fine_tuning = TASK_TRAITS["det"].fine_tuning
    metrics: tuple[Metric, ...] = (Metric("mAP@0.5", "map50"), Metric("mAP@0.25", "map25"))

    def needs_clip(self, cfg: Config) -> bool:
        return needs_text(cfg)

    def build_model(self, cfg: Config, bundle, class_names: list[str], restoring: bool = False) -> nn.Module:
        if restoring:  # the mean sizes are a buffer of the checkpoint: no training data needed
            sizes = torch.ones(len(class_names), 3)
        else:
            sizes = dataset_mean_sizes(make_dataset(cfg, "train"), len(class_names))
        return VoteNetDetector(cfg, bundle, class_names, sizes)

    def loss_terms(self, core, batch, out, cfg: Config, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return det_terms(core, batch, out, cfg, gen)

    def evaluate(self, core, loader, cfg: Config, device: torch.device, class_names: list[str]) -> dict[str, float]:
        return flat_scores(evaluate_det(core, loader, cfg, device, class_names))

    def predict(self, core, batch, cfg: Config) -> dict[str, np.ndarray]:
        """``boxes`` (D, 9): centre, size, heading, class, score after NMS; ``labels`` (N,): the class of the
        highest-scoring predicted box containing each point (-1: none)."""
        boxes = core.predict(core(batch))[0].cpu()  # (D, 9)
        labels = torch.full((len(batch.point_xyz),), -1, dtype=torch.long)
        if len(boxes):
            inside = points_in_boxes(batch.point_xyz.cpu(), boxes[:, :7])  # (N, D)
            score = torch.where(inside, boxes[:, 8], -1.0)  # (N, D)
            best = score.argmax(1)
            hit = inside.any(1)
            labels[hit] = boxes[best[hit], 7].long()
        return {"labels": labels.numpy(), "boxes": boxes.numpy()}


TASK = DetTask()
