"""VOC-style AP against a hand-computed precision-recall case and a naive loop implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from t4p.tasks.det_metrics import DetEvaluator, voc_ap


def _gt(*centres, cls=0, size=1.0):
    return torch.tensor([[x, y, 0.0, size, size, size, 0.0, cls] for x, y in centres], dtype=torch.float64)


def _pred(rows):
    """rows: (x, y, class, score) unit boxes."""
    return torch.tensor([[x, y, 0.0, 1.0, 1.0, 1.0, 0.0, c, s] for x, y, c, s in rows], dtype=torch.float64)


def test_hand_computed_precision_recall():
    # 3 GT boxes; detections by score: TP, FP (nowhere), TP, duplicate of GT 0 (FP), TP.
    # precision 1, 1/2, 2/3, 2/4, 3/5 at recall 1/3, 1/3, 2/3, 2/3, 1
    # envelope: 1 on (0, 1/3], 2/3 on (1/3, 2/3], 3/5 on (2/3, 1] -> AP = 1/3 + 2/9 + 1/5 = 34/45
    ev = DetEvaluator(["a", "b"], oriented=False, thresholds=(0.5,))
    gt = _gt((0, 0), (5, 0), (10, 0))
    pred = _pred([(0, 0, 0, 0.9), (20, 20, 0, 0.8), (5.1, 0, 0, 0.7), (0.05, 0, 0, 0.6), (10, 0.1, 0, 0.5)])
    ev.add(pred, gt)
    out = ev.compute()
    assert out["ap50"]["a"] == pytest.approx(34 / 45)
    assert math.isnan(out["ap50"]["b"])  # no ground truth of class b: excluded from the mAP
    assert out["map50"] == pytest.approx(34 / 45)


def test_threshold_decides_true_positive():
    # a box shifted by 0.5 has IoU 1/3: a hit at 0.25, a miss at 0.5
    ev = DetEvaluator(["a"], oriented=True)
    ev.add(_pred([(0.5, 0, 0, 0.9)]), _gt((0, 0)))
    out = ev.compute()
    assert out["map25"] == pytest.approx(1.0)
    assert out["map50"] == pytest.approx(0.0)


def naive_iou_axis_aligned(a, b) -> float:
    inter = 1.0
    for d in range(3):
        lo = max(a[d] - a[3 + d] / 2, b[d] - b[3 + d] / 2)
        hi = min(a[d] + a[3 + d] / 2, b[d] + b[3 + d] / 2)
        inter *= max(0.0, hi - lo)
    return inter / (a[3] * a[4] * a[5] + b[3] * b[4] * b[5] - inter)


def naive_ap(preds, gts, k, thr) -> float:
    """Plain loops: greedy matching, then the area under the precision envelope, point by point."""
    dets = [(float(p[8]), s, p) for s, ps in enumerate(preds) for p in ps.tolist() if int(p[7]) == k]
    dets.sort(key=lambda t: -t[0])
    gt_boxes = {s: [g for g in gs.tolist() if int(g[7]) == k] for s, gs in enumerate(gts)}
    n_gt = sum(len(v) for v in gt_boxes.values())
    used = {s: [False] * len(v) for s, v in gt_boxes.items()}
    tp, fp, points = 0, 0, []
    for _, s, p in dets:
        best, best_j = -1.0, -1
        for j, g in enumerate(gt_boxes[s]):
            iou = naive_iou_axis_aligned(p, g)
            if iou > best:
                best, best_j = iou, j
        if best >= thr and not used[s][best_j]:
            used[s][best_j] = True
            tp += 1
        else:
            fp += 1
        points.append((tp / n_gt, tp / (tp + fp)))
    ap, prev_r = 0.0, 0.0
    for r, _ in points:
        if r > prev_r:
            ap += (r - prev_r) * max(pp for rr, pp in points if rr >= r)
            prev_r = r
    return ap


def test_matches_naive_implementation_on_random_scenes():
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    preds, gts = [], []
    for _ in range(6):
        g = rng.integers(1, 6)
        centres = rng.uniform(0, 6, size=(g, 3))
        sizes = rng.uniform(0.4, 1.5, size=(g, 3))
        gcls = rng.integers(0, 3, size=(g, 1))
        gt = np.concatenate([centres, sizes, np.zeros((g, 1)), gcls], 1)
        d = rng.integers(0, 10)
        base = gt[rng.integers(0, g, size=d)]
        jitter = np.concatenate([rng.normal(0, 0.25, (d, 3)), rng.normal(0, 0.15, (d, 3)), np.zeros((d, 1))], 1)
        boxes = base[:, :7] + jitter
        boxes[:, 3:6] = np.abs(boxes[:, 3:6]) + 0.05
        pcls = np.where(rng.random(d) < 0.8, base[:, 7], rng.integers(0, 3, d))
        pred = np.concatenate([boxes, pcls[:, None], rng.random((d, 1))], 1)
        preds.append(torch.from_numpy(pred))
        gts.append(torch.from_numpy(gt))
    ev = DetEvaluator(classes, oriented=False)
    for p, g in zip(preds, gts, strict=True):
        ev.add(p, g)
    out = ev.compute()
    for thr in (0.25, 0.5):
        for k, name in enumerate(classes):
            assert out[f"ap{round(100 * thr)}"][name] == pytest.approx(naive_ap(preds, gts, k, thr), abs=1e-12)


def test_voc_ap_perfect_and_empty():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    assert voc_ap(np.array([]), np.array([])) == 0.0
