"""Instance-segmentation metrics on the ORIGINAL points (S3DIS, Table 2).

Two families, both per class and averaged over the classes (all 13 for S3DIS):

* ScanNet-style average precision (the benchmark's ``evaluate_semantic_instance.py``, as
  PointGroup and SoftGroup evaluate S3DIS): ``map`` = mean AP over IoU thresholds
  0.50, 0.55, ..., 0.90 (``np.arange(0.5, 0.95, 0.05)``: the benchmark's "0.5:0.95"),
  ``map50`` and ``map25`` at one threshold. A match needs IoU strictly above the threshold
  and the same class; each ground-truth (GT) instance takes its highest-scoring match, further
  matches to it are false positives; an unmatched proposal is a false positive unless more
  than ``threshold`` of it lies on void points or on GT instances of its class smaller than
  ``min_region_size``. AP integrates the precision-recall curve over the unique scores with
  the benchmark's midpoint rule (no precision envelope), the curve starting at (recall 0,
  precision 1). A class with GT but no proposal has AP 0; a class without GT has no AP (NaN,
  left out of the mean).
* ASIS / 3D-BoNet-style mean precision and recall at IoU 0.5 (``mprec``, ``mrec``): a proposal
  of class c is a true positive when its best IoU with a GT instance of class c is >= 0.5;
  precision = TP / proposals, recall = matched GT instances / GT instances (ASIS counts true
  positive proposals; the two agree for disjoint proposals, such as PointGroup clustering
  produces, and ours stays <= 1 for overlapping ones). A class with GT but no proposal has
  precision 0; NaN (left out) where undefined (no GT for recall; neither GT nor proposal for
  precision).

Proposals and GT instances smaller than ``min_region_size`` points are dropped (the
benchmark's 100, which SoftGroup also uses for S3DIS). Void points: GT label outside
``[0, K)`` (e.g. the ignore label) or GT instance < 0.

Intersections are counted with one ``bincount`` over (proposal, GT instance) pairs, linear
in the proposals' total size; the matching itself runs over the (few hundred) instances.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IOU_THRESHOLDS = np.append(np.arange(0.5, 0.95, 0.05), 0.25)  # the benchmark's list; the last is 0.25
PREC_REC_IOU = 0.5

@dataclass
class Proposals:
    """Instance proposals of one scene as (point, proposal) membership pairs (masks may overlap).

    ``point_idx`` / ``owner`` int64 ``(L,)``: point ``point_idx[l]`` belongs to proposal
    ``owner[l]``; ``labels`` int64 ``(P,)`` class per proposal; ``scores`` float ``(P,)``.
    """

    point_idx: np.ndarray
    owner: np.ndarray
    labels: np.ndarray
    scores: np.ndarray

    @classmethod
    def from_point_ids(cls, ids: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> Proposals:
        """Disjoint proposals from one id per point (``ids`` (N,), -1 = in no proposal)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        pts = np.flatnonzero(ids >= 0)
        return cls(pts, ids[pts], np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float64))

    @classmethod
    def from_masks(cls, masks: list[np.ndarray], labels, scores) -> Proposals:
        """Proposals from boolean masks ``(N,)`` each (tests, hand-built scenes)."""
        idx = [np.flatnonzero(np.asarray(m, dtype=bool)) for m in masks]
        owner = [np.full(len(i), k, dtype=np.int64) for k, i in enumerate(idx)]
        cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64))
        return cls(cat(idx), cat(owner), np.asarray(labels, dtype=np.int64).reshape(-1),
                   np.asarray(scores, dtype=np.float64).reshape(-1))

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class _Scene:
    """What the matching needs from one scene: sizes, classes and the proposal x GT intersections."""

    gt_cls: np.ndarray  # (G,) class of each GT instance (all sizes)
    gt_size: np.ndarray  # (G,)
    pr_cls: np.ndarray  # (P,) proposals kept (size >= min_region_size)
    pr_score: np.ndarray  # (P,)
    pr_size: np.ndarray  # (P,)
    pr_void: np.ndarray  # (P,) points of the proposal on void
    inter: np.ndarray  # (P, G) intersection counts


@dataclass
class InstanceEvaluator:
    """Accumulate scenes with ``add_scene``, then ``compute()`` the AP and mPrec/mRec families."""

    class_names: list[str] | tuple[str, ...]
    min_region_size: int = 100
    scenes: list[_Scene] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def add_scene(self, gt_labels, gt_instances, proposals: Proposals) -> None:
        """``gt_labels`` / ``gt_instances`` ``(N,)`` on the original points; ``proposals`` on the same points."""
        labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
        inst = np.asarray(gt_instances, dtype=np.int64).reshape(-1)
        if labels.shape != inst.shape:
            raise ValueError(f"add_scene: gt_labels {labels.shape} and gt_instances {inst.shape} differ")
        n, k = len(labels), self.num_classes
        if len(proposals.point_idx) and (proposals.point_idx.min() < 0 or proposals.point_idx.max() >= n):
            raise ValueError(f"add_scene: proposal point indices outside [0, {n}) (scene has {n} points)")
        void = (inst < 0) | (labels < 0) | (labels >= k)  # (N,)
        gt_ids, gt_of_point = np.unique(np.where(void, -1, inst), return_inverse=True)
        has_void = len(gt_ids) > 0 and gt_ids[0] == -1
        gt_of_point = gt_of_point - int(has_void)  # (N,) -1 on void
        g = len(gt_ids) - int(has_void)
        valid = ~void
        gt_size = np.bincount(gt_of_point[valid], minlength=g)  # (G,)
        # majority class per GT instance (S3DIS: one class per annotation file)
        votes = np.bincount(gt_of_point[valid] * k + labels[valid], minlength=g * k).reshape(g, k)
        gt_cls = votes.argmax(1) if g else np.zeros(0, dtype=np.int64)

        p = len(proposals)
        owner, pts = proposals.owner, proposals.point_idx
        pr_size = np.bincount(owner, minlength=p)  # (P,)
        pr_void = np.bincount(owner[void[pts]], minlength=p)
        on_gt = ~void[pts]
        inter = np.bincount(owner[on_gt] * g + gt_of_point[pts[on_gt]], minlength=p * g).reshape(p, g)  # (P, G)
        keep = (pr_size >= self.min_region_size) & (proposals.labels >= 0) & (proposals.labels < k)
        self.scenes.append(
            _Scene(gt_cls, gt_size, proposals.labels[keep], proposals.scores[keep].astype(np.float64),
                   pr_size[keep], pr_void[keep], inter[keep])
        )

    # ------------------------------------------------------------------ ScanNet-style AP

    def _class_curve(self, c: int, th: float) -> tuple[np.ndarray, np.ndarray, int, bool, bool]:
        """(y_true, y_score, hard false negatives, has_gt, has_pred) for class ``c`` at IoU ``th``."""
        y_true: list[float] = []
        y_score: list[float] = []
        hard_fn, has_gt, has_pred = 0, False, False
        for s in self.scenes:
            gts = np.flatnonzero((s.gt_cls == c) & (s.gt_size >= self.min_region_size))
            prs = np.flatnonzero(s.pr_cls == c)
            has_gt |= len(gts) > 0
            has_pred |= len(prs) > 0
            iou = _iou(s.inter[np.ix_(prs, gts)], s.pr_size[prs], s.gt_size[gts])  # (p_c, g_c)
            visited = np.zeros(len(prs), dtype=bool)
            for j in range(len(gts)):
                score = None
                for i in np.flatnonzero(iou[:, j] > th):
                    if visited[i]:
                        continue
                    conf = s.pr_score[prs[i]]
                    if score is None:  # first match: a true positive (for now with this score)
                        score, visited[i] = conf, True
                    else:  # a second match: the lower of the two scores is a false positive
                        y_true.append(0.0)
                        y_score.append(min(score, conf))
                        score = max(score, conf)
                if score is None:
                    hard_fn += 1
                else:
                    y_true.append(1.0)
                    y_score.append(score)
            # unmatched proposals: false positives unless mostly on void / small GT instances
            small = (s.gt_size < self.min_region_size) & (s.gt_cls == c)  # (G,) small GT of this class
            for i in np.flatnonzero(~(iou > th).any(1)):
                p = prs[i]
                ignored = s.pr_void[p] + s.inter[p, small].sum()
                if ignored / s.pr_size[p] <= th:
                    y_true.append(0.0)
                    y_score.append(s.pr_score[p])
        return np.asarray(y_true), np.asarray(y_score), hard_fn, has_gt, has_pred

    def average_precision(self, c: int, th: float) -> float:
        y_true, y_score, hard_fn, has_gt, has_pred = self._class_curve(c, th)
        if not has_gt:
            return float("nan")
        if not has_pred:
            return 0.0
        return _ap_from_curve(y_true, y_score, hard_fn)

    # ------------------------------------------------------------------ ASIS-style mPrec / mRec

    def precision_recall(self, c: int, th: float = PREC_REC_IOU) -> tuple[float, float]:
        tp = n_pred = matched = n_gt = 0
        for s in self.scenes:
            gts = np.flatnonzero((s.gt_cls == c) & (s.gt_size >= self.min_region_size))
            prs = np.flatnonzero(s.pr_cls == c)
            hit = _iou(s.inter[np.ix_(prs, gts)], s.pr_size[prs], s.gt_size[gts]) >= th  # (p_c, g_c)
            tp += int(hit.any(1).sum())
            matched += int(hit.any(0).sum())
            n_pred += len(prs)
            n_gt += len(gts)
        prec = tp / n_pred if n_pred else (0.0 if n_gt else float("nan"))
        rec = matched / n_gt if n_gt else float("nan")
        return prec, rec

    # ------------------------------------------------------------------ summary

    def compute(self) -> dict:
        """``{"map", "map50", "map25", "mprec", "mrec", "ap"|"ap50"|"ap25"|"prec"|"rec": {class: value}}``."""
        names = list(self.class_names)
        ap = np.array([[self.average_precision(c, th) for th in IOU_THRESHOLDS] for c in range(self.num_classes)])
        main = ~np.isclose(IOU_THRESHOLDS, 0.25)  # (T,) 0.50..0.90
        i50 = int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, 0.5))[0])
        i25 = int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, 0.25))[0])
        per_class_ap = ap[:, main].mean(1)  # NaN for classes without GT
        pr = np.array([self.precision_recall(c) for c in range(self.num_classes)]).reshape(-1, 2)
        return {
            "map": _nanmean(per_class_ap),
            "map50": _nanmean(ap[:, i50]),
            "map25": _nanmean(ap[:, i25]),
            "mprec": _nanmean(pr[:, 0]),
            "mrec": _nanmean(pr[:, 1]),
            "ap": dict(zip(names, per_class_ap.tolist(), strict=True)),
            "ap50": dict(zip(names, ap[:, i50].tolist(), strict=True)),
            "ap25": dict(zip(names, ap[:, i25].tolist(), strict=True)),
            "prec": dict(zip(names, pr[:, 0].tolist(), strict=True)),
            "rec": dict(zip(names, pr[:, 1].tolist(), strict=True)),
        }


def _iou(inter: np.ndarray, pr_size: np.ndarray, gt_size: np.ndarray) -> np.ndarray:
    union = pr_size[:, None] + gt_size[None, :] - inter  # (P, G)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def _ap_from_curve(y_true: np.ndarray, y_score: np.ndarray, hard_fn: int) -> float:
    """Area under the precision-recall curve over unique score thresholds (the benchmark's midpoint rule)."""
    if len(y_true) == 0:  # every GT missed and every proposal ignored (on void / small instances)
        return 0.0
    order = np.argsort(y_score, kind="stable")
    score, true = y_score[order], y_true[order]
    cum = np.append(np.cumsum(true), 0.0)  # cum[-1] = 0 handles the first threshold
    n, n_true = len(score), cum[-2]
    _, first = np.unique(score, return_index=True)  # (U,) first index of each unique score, ascending
    tp = n_true - cum[first - 1]  # proposals scoring >= threshold that are true
    fp = n - first - tp
    fn = cum[first - 1] + hard_fn
    precision = np.append(tp / (tp + fp), 1.0)  # (U + 1,) the artificial (recall 0, precision 1) point
    recall = np.append(tp / np.maximum(tp + fn, 1e-12), 0.0)
    padded = np.concatenate([[recall[0]], recall, [0.0]])
    widths = 0.5 * (padded[:-2] - padded[2:])  # midpoint rule: (r[i-1] - r[i+1]) / 2
    return float(np.dot(precision, widths))


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def prefixed(scores: dict, split: str) -> dict:
    """Flat metrics for reporting: ``{split}_map``, ``{split}_ap50/<class>`` ..."""
    out = {f"{split}_{k}": scores[k] for k in ("map", "map50", "map25", "mprec", "mrec")}
    for fam in ("ap", "ap50", "prec", "rec"):
        out.update({f"{split}_{fam}/{name}": v for name, v in scores[fam].items()})
    return out
