"""Semantic-segmentation scores from a confusion matrix: mIoU, mAcc, overall accuracy, per-class IoU.

A class absent from both the prediction and the ground truth has no IoU (NaN) and is left out
of the mean rather than counted as 0; a class absent from the ground truth has no accuracy.
"""

from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_label: int = -100):
    """(K, K) int64 counts, rows = ground truth, columns = prediction; ``ignore_label`` targets dropped."""
    pred = torch.as_tensor(pred).reshape(-1).long().cpu()
    target = torch.as_tensor(target).reshape(-1).long().cpu()
    keep = (target != ignore_label) & (target >= 0) & (target < num_classes)
    idx = target[keep] * num_classes + pred[keep].clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).numpy()


def segmentation_scores(cm: np.ndarray, class_names: list[str] | tuple[str, ...] | None = None) -> dict:
    """``{"miou", "macc", "oa", "iou": {name: value or NaN}}`` from a confusion matrix (rows = truth)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    gt = cm.sum(1)
    pr = cm.sum(0)
    union = gt + pr - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)  # NaN: absent from truth and prediction
        acc = np.where(gt > 0, tp / gt, np.nan)  # NaN: absent from truth
    total = cm.sum()
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(cm))]
    return {
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "macc": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
        "oa": float(tp.sum() / total) if total > 0 else float("nan"),
        "iou": {n: float(v) for n, v in zip(names, iou, strict=True)},
    }
