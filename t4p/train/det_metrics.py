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

# Per-class AP@0.5 from the paper's appendix (Table 7: SUN RGB-D v1, 10 classes; Table 8: ScanNet v2, 18 classes).
PAPER_TABLE7 = {
    "classes": ("bed", "table", "sofa", "chair", "toilet", "desk", "dresser", "night_stand", "bookshelf", "bathtub"),
    "rows": {
        "VoteNet": (47.3, 19.7, 41.4, 54.1, 58.6, 5.2, 13.6, 35.0, 4.6, 49.9, 32.9),
        "VoteNet* (SR-UNet)": (47.8, 19.6, 48.1, 54.6, 60.0, 6.3, 15.8, 27.3, 5.4, 32.1, 31.7),
        "VoteNet+PPKT*": (52.1, 17.6, 50.3, 52.3, 58.1, 6.2, 13.0, 43.7, 9.4, 36.6, 33.9),
        "VoteNet+PointContrast*": (50.5, 19.4, 51.8, 54.9, 57.4, 7.5, 16.2, 37.0, 5.9, 47.6, 34.8),
        "VoteNet+Text4Point*": (52.7, 20.2, 52.5, 52.2, 64.1, 6.6, 15.4, 43.0, 8.4, 54.7, 37.0),
    },
}
PAPER_TABLE8 = {
    "classes": ("cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture", "counter",
                "desk", "curtain", "refrigerator", "showercurtrain", "toilet", "sink", "bathtub", "garbagebin"),
    "rows": {
        "VoteNet": (8.1, 76.1, 67.2, 68.8, 42.4, 15.3, 6.4, 28.0, 1.3, 9.5, 37.5, 11.6, 27.8, 10.0, 86.5, 16.8,
                    78.9, 11.7, 33.5),
        "VoteNet* (SR-UNet)": (9.9, 70.5, 70.0, 60.5, 43.4, 21.8, 10.5, 33.3, 0.8, 15.4, 33.3, 26.6, 39.3, 9.7,
                               74.7, 23.7, 75.8, 18.1, 35.4),
        "VoteNet+PointContrast*": (13.1, 74.7, 75.4, 61.3, 44.8, 19.8, 12.9, 32.0, 0.9, 21.9, 31.9, 27.0, 32.6,
                                   17.5, 87.4, 23.2, 80.8, 26.7, 38.0),
        "VoteNet+PPKT*": (8.0, 70.3, 72.6, 57.0, 40.3, 23.3, 11.4, 45.3, 3.5, 18.8, 38.1, 25.1, 31.3, 35.5, 86.7,
                          18.1, 87.1, 28.1, 38.9),
        "VoteNet+Text4Point*": (8.0, 72.6, 69.5, 61.3, 44.1, 21.7, 14.6, 38.2, 1.9, 13.4, 35.9, 23.7, 31.7, 53.1,
                                90.2, 26.3, 79.2, 29.3, 39.7),
    },
}
PAPER_TABLES = {"sunrgbd10": PAPER_TABLE7, "scannet18": PAPER_TABLE8}
SHORT_NAMES = {"night_stand": "nightstd", "bookshelf": "bkshlf", "cabinet": "cab", "window": "wind",
               "picture": "pic", "counter": "cntr", "refrigerator": "refrig", "showercurtrain": "shower",
               "garbagebin": "garbage"}


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
        """``{"ap@0.25": {class: ap}, "map@0.25": float, ...}`` (AP in [0, 1])."""
        out: dict = {}
        for t in self.thresholds:
            aps = {name: self.class_ap(k, t) for k, name in enumerate(self.class_names)}
            valid = [v for v in aps.values() if not math.isnan(v)]
            out[f"ap@{t}"] = aps
            out[f"map@{t}"] = float(np.mean(valid)) if valid else math.nan
        return out


def paper_table(scores: dict, class_key: str, threshold: float = 0.5, ours: str = "t4p (this run)") -> str:
    """A markdown table in the layout of the paper's Table 7 (sunrgbd10) or 8 (scannet18), ours last."""
    table = PAPER_TABLES[class_key]
    names = table["classes"]
    head = "| Method | " + " | ".join(SHORT_NAMES.get(n, n) for n in names) + " | mAP |"
    lines = [head, "|" + "---|" * (len(names) + 2)]
    for method, row in table["rows"].items():
        lines.append(f"| {method} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
    aps = scores[f"ap@{threshold}"]
    ours_row = [100 * aps.get(n, math.nan) for n in names] + [100 * scores[f"map@{threshold}"]]
    lines.append(f"| {ours} | " + " | ".join("-" if math.isnan(v) else f"{v:.1f}" for v in ours_row) + " |")
    return "\n".join(lines)
