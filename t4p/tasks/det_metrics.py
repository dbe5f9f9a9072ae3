"""Detection metrics: VOC-style AP per class at 3D IoU thresholds, mAP, and the paper's Tables 7 and 8.

Matching follows VoteNet's ``eval_det`` (itself the PASCAL VOC code): per class, predictions of all
scenes sorted by score; each takes the unmatched ground-truth box of its scene with the highest IoU;
a true positive when that IoU >= the threshold and the box was not taken yet. AP is the area under
the precision envelope (VOC 2010+ "all points"). The mAP averages the classes that have at least one
ground-truth box (VoteNet's convention); the others report NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from t4p.models.box_ops import iou_3d


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone precision envelope (VOC 2010+), recall ascending."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # envelope: max precision at recall >= r
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def precision_recall(
    scores: np.ndarray, scene: np.ndarray, iou: list[np.ndarray], n_gt: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy VOC matching for one class.

    ``scores`` (D,) and ``scene`` (D,) per detection; ``iou[d]`` (G_s,) its IoU with the ground-truth
    boxes of its scene (in a fixed order per scene). Returns (recall, precision), each (D,).
    """
    order = np.argsort(-scores, kind="stable")
    taken: dict[int, np.ndarray] = {}
    tp = np.zeros(len(order))
    for rank, d in enumerate(order):
        ious = iou[d]
        if len(ious) == 0:
            continue
        j = int(np.argmax(ious))
        used = taken.setdefault(int(scene[d]), np.zeros(len(ious), dtype=bool))
        if ious[j] >= threshold and not used[j]:
            used[j] = True
            tp[rank] = 1
    tp_cum = np.cumsum(tp)
    recall = tp_cum / max(n_gt, 1)
    precision = tp_cum / np.arange(1, len(order) + 1)
    return recall, precision


@dataclass
class DetEvaluator:
    """Accumulates predictions and ground truth scene by scene; ``compute()`` returns AP per class and mAP.

    A prediction row is ``(7 box, class, score)``; a ground-truth row ``(7 box, class)``.
    """

    class_names: list[str]
    oriented: bool = True  # oriented-box IoU (SUN RGB-D); False = axis-aligned (ScanNet)
    thresholds: tuple[float, ...] = (0.25, 0.5)
    preds: list[torch.Tensor] = field(default_factory=list)
    gts: list[torch.Tensor] = field(default_factory=list)

    def add(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        if pred.ndim != 2 or pred.shape[1] != 9:
            raise ValueError(f"DetEvaluator.add: predictions must be (D, 9) box+class+score, got {tuple(pred.shape)}")
        if gt.ndim != 2 or gt.shape[1] != 8:
            raise ValueError(f"DetEvaluator.add: ground truth must be (G, 8) box+class, got {tuple(gt.shape)}")
        self.preds.append(pred.detach().double().cpu())
        self.gts.append(gt.detach().double().cpu())

    def class_ap(self, k: int, threshold: float) -> float:
        scores, scenes, ious, n_gt = [], [], [], 0
        for s, (pred, gt) in enumerate(zip(self.preds, self.gts, strict=True)):
            g = gt[gt[:, 7] == k, :7]
            p = pred[pred[:, 7] == k]
            n_gt += len(g)
            if len(p) == 0:
                continue
            m = iou_3d(p[:, :7], g, oriented=self.oriented).numpy()  # (D_s, G_s)
            scores.append(p[:, 8].numpy())
            scenes.append(np.full(len(p), s))
            ious.extend(list(m))
        if n_gt == 0:
            return math.nan
        if not scores:
            return 0.0
        rec, prec = precision_recall(np.concatenate(scores), np.concatenate(scenes), ious, n_gt, threshold)
        return voc_ap(rec, prec)

    def compute(self) -> dict:
        """``{"ap25": {class: ap}, "map25": float, "ap50": ..., "map50": ...}`` (AP in [0, 1]; the threshold in
        percent, so the names need no "@" or "." for MLflow)."""
        out: dict = {}
        for t in self.thresholds:
            aps = {name: self.class_ap(k, t) for k, name in enumerate(self.class_names)}
            valid = [v for v in aps.values() if not math.isnan(v)]
            out[f"ap{round(100 * t)}"] = aps
            out[f"map{round(100 * t)}"] = float(np.mean(valid)) if valid else math.nan
        return out
