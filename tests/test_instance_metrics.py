"""Oracles for the instance metrics (t4p.tasks.instance_metrics.py).

Hand-built scenes with AP / mPrec / mRec worked out by hand in the comments, and AP on random
scenes against a naive implementation written differently: proposals sorted by score and
matched greedily one at a time, the precision-recall curve walked point by point from
(recall 0, precision 1) and integrated with the trapezoid rule (which is what the ScanNet
benchmark's ``convolve(recall, [-0.5, 0, 0.5])`` midpoint sum equals, by summation by parts).
No precision envelope: the benchmark (and so PointGroup/SoftGroup on S3DIS) has none.
"""

from __future__ import annotations

import numpy as np
import pytest

from t4p.tasks.instance_metrics import IOU_THRESHOLDS, InstanceEvaluator, Proposals

NAMES = [f"c{i}" for i in range(13)]  # 13 classes as S3DIS; classes without GT are left out of the means


def _mask(n: int, idx) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[list(idx)] = True
    return m


def _evaluate(labels, inst, masks, cls, scores, min_region_size=1) -> dict:
    ev = InstanceEvaluator(NAMES, min_region_size=min_region_size)
    ev.add_scene(np.asarray(labels), np.asarray(inst), Proposals.from_masks(masks, cls, scores))
    return ev.compute()


# --------------------------------------------------------------------------- hand-built scenes


def test_perfect_prediction_scores_one():
    # class 0: instances 0 (10 pts) and 1 (10 pts); class 1: instance 2 (10 pts); 5 void points
    n = 35
    labels = np.array([0] * 20 + [1] * 10 + [-100] * 5)
    inst = np.array([0] * 10 + [1] * 10 + [2] * 10 + [-1] * 5)
    masks = [inst == k for k in range(3)]
    out = _evaluate(labels, inst, masks, [0, 0, 1], [0.9, 0.8, 0.3])
    for key in ("map", "map50", "map25", "mprec", "mrec"):
        assert out[key] == pytest.approx(1.0), key
    assert np.isnan(out["ap"]["c5"])  # no GT of class 5: no AP, left out of the mean
    assert out["ap"]["c0"] == pytest.approx(1.0) and out["ap"]["c1"] == pytest.approx(1.0)
    assert n == len(labels)


def test_split_instance():
    # One GT instance (class 0, 11 points) predicted as two fragments: F1 = 8 points (IoU 8/11 = 0.727,
    # score 0.9) and F2 = 3 points (IoU 3/11 = 0.273, score 0.8).
    # * IoU thresholds 0.50, 0.55, 0.60, 0.65, 0.70 (< 0.727): F1 is a TP, F2 an FP with the LOWER score.
    #   Curve over unique scores: t=0.8 -> P=1/2, R=1; t=0.9 -> P=1, R=1; plus (R=0, P=1).
    #   Midpoint rule: 1/2*(R(0.8)-R(0.9)) * 1/2 + 1/2*(R(0.8)-0) * 1 + 1/2*(R(0.9)-0) * 1 = 0 + 1/2 + 1/2 = 1.
    # * 0.75 .. 0.90 (4 thresholds): no match, both FPs, recall 0 -> AP 0.
    # * 0.25: F1 matches; F2 (IoU 0.273 > 0.25) is a second match to the same GT -> FP at 0.8 -> AP 1.
    # mAP = 5/9, AP@0.5 = AP@0.25 = 1. mPrec: F1 TP, F2 FP -> 1/2. mRec: the GT is found -> 1.
    n = 11
    labels, inst = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
    out = _evaluate(labels, inst, [_mask(n, range(8)), _mask(n, range(8, 11))], [0, 0], [0.9, 0.8])
    assert out["map"] == pytest.approx(5 / 9)
    assert out["map50"] == pytest.approx(1.0)
    assert out["map25"] == pytest.approx(1.0)
    assert out["mprec"] == pytest.approx(0.5)
    assert out["mrec"] == pytest.approx(1.0)


def test_merged_instance():
    # Two GT instances of class 0: A (10 points) and B (6 points); one proposal M = A u B, score 0.9.
    # IoU(M, A) = 10/16 = 0.625, IoU(M, B) = 6/16 = 0.375.
    # * 0.50, 0.55, 0.60: M matches A (TP), B is missed (hard FN): one point P=1, R=1/2 plus (R=0, P=1):
    #   AP = 1/2*(1/2 - 0)*1 + 1/2*(1/2 - 0)*1 = 1/2.
    # * 0.25: M matches whichever GT comes first; it is then taken, the other is a FN -> AP 1/2.
    # * 0.65 .. 0.90 (6 thresholds): nothing matches -> AP 0.
    # mAP = 3/9 * 1/2 = 1/6; AP@0.5 = 1/2. mPrec: M's best IoU 0.625 >= 0.5 -> 1. mRec: 1 of 2 -> 1/2.
    n = 16
    labels, inst = np.zeros(n, dtype=int), np.array([0] * 10 + [1] * 6)
    out = _evaluate(labels, inst, [np.ones(n, dtype=bool)], [0], [0.9])
    assert out["map"] == pytest.approx(1 / 6)
    assert out["map50"] == pytest.approx(0.5)
    assert out["map25"] == pytest.approx(0.5)
    assert out["mprec"] == pytest.approx(1.0)
    assert out["mrec"] == pytest.approx(0.5)


def test_false_positive_with_high_score():
    # Class 0: GT A (points 0-9), predicted exactly with score 0.5. Class 1: GT B (points 10-19), predicted
    # exactly with score 0.7. An extra class-0 proposal X on B's points scores 0.9 (wrong class: an FP for
    # class 0, not ignorable since B is a real, large GT instance).
    # Class 0 at every threshold: TP 0.5, FP 0.9. Unique scores ascending: t=0.5 -> P=1/2, R=1;
    # t=0.9 -> P=0, R=0; plus (R=0, P=1). Midpoint rule: 1/2*(1-0)*1/2 + 1/2*(1-0)*0 + 1/2*(0-0)*1 = 1/4.
    # (VOC's envelope would give 1/2; the benchmark integrates the raw curve.) Class 1: AP 1.
    # mAP = AP@0.5 = (1/4 + 1)/2 = 5/8. mPrec = (1/2 + 1)/2 = 3/4, mRec = 1.
    labels, inst = np.array([0] * 10 + [1] * 10), np.array([0] * 10 + [1] * 10)
    a, b = inst == 0, inst == 1
    out = _evaluate(labels, inst, [a, b, b], [0, 1, 0], [0.5, 0.7, 0.9])
    assert out["ap"]["c0"] == pytest.approx(0.25)
    assert out["ap"]["c1"] == pytest.approx(1.0)
    assert out["map"] == pytest.approx(5 / 8)
    assert out["map50"] == pytest.approx(5 / 8)
    assert out["mprec"] == pytest.approx(0.75)
    assert out["mrec"] == pytest.approx(1.0)


def test_proposal_on_void_is_ignored_and_small_regions_dropped():
    # A class-0 proposal lying on void points (label -100) is not a false positive (ScanNet's rule);
    # a proposal with fewer than min_region_size points is dropped; a class with GT but no proposal has AP 0.
    labels = np.array([0] * 10 + [-100] * 10 + [2] * 3)
    inst = np.array([0] * 10 + [-1] * 10 + [5] * 3)
    masks = [_mask(23, range(10)), _mask(23, range(10, 20)), _mask(23, range(20, 23))]
    out = _evaluate(labels, inst, masks, [0, 0, 2], [0.5, 0.9, 0.9], min_region_size=5)
    assert out["ap"]["c0"] == pytest.approx(1.0)  # the void proposal (score 0.9) did not count
    assert np.isnan(out["ap"]["c2"])  # the 3-point GT is below min_region_size: no GT of class 2
    ev = InstanceEvaluator(NAMES, min_region_size=1)
    ev.add_scene(labels, inst, Proposals.from_masks(masks[:1], [0], [0.5]))
    assert ev.compute()["ap"]["c2"] == 0.0 and ev.compute()["prec"]["c2"] == 0.0


# --------------------------------------------------------------------------- naive reference


def _naive_ap(scenes, c: int, th: float, min_size: int) -> float:
    """Greedy matching in descending score order, explicit PR walk, trapezoid rule from (0, 1)."""
    records = []  # (score, is_tp)
    n_gt = 0
    has_pred = False
    for labels, inst, masks, cls, scores in scenes:
        void = (inst < 0) | (labels < 0)
        gts = {}
        for g in sorted(set(inst[~void].tolist())):
            members = (inst == g) & ~void
            if members.sum() >= min_size and np.bincount(labels[members]).argmax() == c:
                gts[g] = members
        small = np.zeros(len(labels), dtype=bool)
        for g in set(inst[~void].tolist()):
            members = (inst == g) & ~void
            if members.sum() < min_size and np.bincount(labels[members]).argmax() == c:
                small |= (inst == g) & ~void
        n_gt += len(gts)
        taken = set()
        mine = [k for k in range(len(masks)) if cls[k] == c and masks[k].sum() >= min_size]
        has_pred = has_pred or bool(mine)
        for k in sorted(mine, key=lambda k: -scores[k]):
            m = masks[k]
            best, best_iou = None, th
            matched_any = False
            for g, gm in gts.items():
                iou = (m & gm).sum() / (m | gm).sum()
                if iou > th:
                    matched_any = True
                    if g not in taken and iou > best_iou - 1e-12:
                        best, best_iou = g, iou
            if best is not None:
                taken.add(best)
                records.append((scores[k], 1))
            elif matched_any:
                records.append((scores[k], 0))  # a duplicate of a GT that is already taken
            elif ((m & (void | small)).sum() / m.sum()) <= th:
                records.append((scores[k], 0))
    if n_gt == 0:
        return float("nan")
    if not has_pred:
        return 0.0
    area, tp, fp = 0.0, 0, 0
    r_prev, p_prev = 0.0, 1.0
    for _score, is_tp in sorted(records, key=lambda x: -x[0]):
        tp += is_tp
        fp += 1 - is_tp
        r, p = tp / n_gt, tp / (tp + fp)
        area += (r - r_prev) * (p + p_prev) / 2
        r_prev, p_prev = r, p
    return area


def _random_scene(rng: np.random.Generator, n_classes: int):
    n = int(rng.integers(40, 120))
    n_inst = int(rng.integers(1, 7))
    inst = rng.integers(-1, n_inst, n)  # -1 = void
    inst_cls = rng.integers(0, n_classes, n_inst)
    labels = np.where(inst >= 0, inst_cls[np.maximum(inst, 0)], -100)
    masks, cls = [], []
    for _ in range(int(rng.integers(0, 9))):
        kind = rng.integers(3)
        if kind == 0 and n_inst:  # a noisy copy of a GT instance
            m = (inst == rng.integers(n_inst)) ^ (rng.random(n) < 0.05)
        elif kind == 1 and n_inst:  # a fragment
            m = (inst == rng.integers(n_inst)) & (rng.random(n) < rng.uniform(0.4, 1.0))
        else:  # random blob
            m = rng.random(n) < rng.uniform(0.05, 0.4)
        if m.sum() == 0:
            continue
        masks.append(m)
        cls.append(int(inst_cls[rng.integers(n_inst)]) if rng.random() < 0.8 else int(rng.integers(n_classes)))
    scores = rng.permutation(len(masks)) / max(1, len(masks)) + rng.uniform(0, 1e-3, len(masks))  # distinct
    return labels, inst, masks, np.asarray(cls, dtype=np.int64), scores


@pytest.mark.parametrize("seed", range(12))
def test_ap_matches_naive_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    n_classes = 3
    scenes = [_random_scene(rng, n_classes) for _ in range(int(rng.integers(1, 4)))]
    min_size = int(rng.integers(1, 6))
    ev = InstanceEvaluator([f"c{i}" for i in range(n_classes)], min_region_size=min_size)
    for labels, inst, masks, cls, scores in scenes:
        ev.add_scene(labels, inst, Proposals.from_masks(masks, cls, scores))
    # Above IoU 0.5 a proposal matches at most one GT, so greedy-by-score is the benchmark's assignment;
    # at 0.25 the benchmark's GT-order greedy may legitimately differ from greedy-by-score.
    for th in IOU_THRESHOLDS[IOU_THRESHOLDS >= 0.5]:
        for c in range(n_classes):
            expected = _naive_ap(scenes, c, th, min_size)
            got = ev.average_precision(c, th)
            if np.isnan(expected):
                assert np.isnan(got)
            else:
                assert got == pytest.approx(expected, abs=1e-9), (c, th)


@pytest.mark.parametrize("seed", range(6))
def test_prec_rec_match_naive_on_random_scenes(seed):
    rng = np.random.default_rng(100 + seed)
    labels, inst, masks, cls, scores = _random_scene(rng, 2)
    ev = InstanceEvaluator(["a", "b"], min_region_size=1)
    ev.add_scene(labels, inst, Proposals.from_masks(masks, cls, scores))
    for c in range(2):
        gts = [inst == g for g in sorted(set(inst[inst >= 0].tolist())) if labels[inst == g][0] == c]
        preds = [m for m, k in zip(masks, cls, strict=True) if k == c]
        ious = np.array([[(p & g).sum() / (p | g).sum() for g in gts] for p in preds]).reshape(len(preds), len(gts))
        tp = sum(1 for row in ious if len(row) and row.max() >= 0.5)
        found = sum(1 for col in ious.T if len(col) and col.max() >= 0.5)
        prec, rec = ev.precision_recall(c)
        if preds:
            assert prec == pytest.approx(tp / len(preds))
        if gts:
            assert rec == pytest.approx(found / len(gts))
