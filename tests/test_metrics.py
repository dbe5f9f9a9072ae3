"""Segmentation scores against hand-computed confusion matrices."""

from __future__ import annotations

import math

import numpy as np
import torch

from t4p.tasks.seg_metrics import confusion_matrix, segmentation_scores


def test_confusion_matrix_counts_and_ignore():
    target = torch.tensor([0, 0, 1, 1, 1, 2, -100, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2, 3, 0])
    cm = confusion_matrix(pred, target, num_classes=4)
    expected = np.array([[1, 1, 0, 0], [1, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm, expected)


def test_scores_hand_computed_with_absent_class():
    # rows = truth, columns = prediction; class 3 absent from both truth and prediction
    cm = np.array([[3, 1, 0, 0], [2, 4, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    s = segmentation_scores(cm, ["a", "b", "c", "d"])
    iou = {"a": 3 / (4 + 5 - 3), "b": 4 / (6 + 6 - 4), "c": 1 / (2 + 1 - 1)}
    for name, value in iou.items():
        assert math.isclose(s["iou"][name], value)
    assert math.isnan(s["iou"]["d"])  # not 0
    assert math.isclose(s["miou"], sum(iou.values()) / 3)
    assert math.isclose(s["macc"], (3 / 4 + 4 / 6 + 1 / 2) / 3)
    assert math.isclose(s["oa"], 8 / 12)


def test_class_predicted_but_absent_from_truth_counts_zero_iou():
    cm = np.array([[2, 1], [0, 0]])  # class 1 predicted once, never true
    s = segmentation_scores(cm)
    assert s["iou"]["1"] == 0.0
    assert math.isclose(s["miou"], (2 / 3 + 0.0) / 2)
    assert math.isclose(s["macc"], 2 / 3)  # no accuracy for a class absent from truth
