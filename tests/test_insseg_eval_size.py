"""Instance evaluation drops proposals and GT below the benchmark's 100 points in the paper recipe."""

from __future__ import annotations

import numpy as np
import pytest

from t4p.recipes import get_recipe
from t4p.tasks.insseg import instance_evaluator
from t4p.tasks.instance_metrics import Proposals


def _scene_with_a_60_point_instance(ev):
    labels = np.array([0] * 60 + [1] * 200)
    inst = np.array([0] * 60 + [1] * 200)
    masks = [inst == 0, inst == 1]
    ev.add_scene(labels, inst, Proposals.from_masks(masks, [0, 1], [0.9, 0.9]))
    return ev.compute()["ap50"]


def test_paper_recipe_uses_the_benchmarks_100_points_and_smoke_keeps_50():
    names = ["a", "b"]
    paper, smoke = get_recipe("s3dis_insseg"), get_recipe("smoke_insseg")
    assert (paper.insseg.min_region_size, smoke.insseg.min_region_size) == (100, 50)
    ap_paper = _scene_with_a_60_point_instance(instance_evaluator(paper, names))
    ap_smoke = _scene_with_a_60_point_instance(instance_evaluator(smoke, names))
    assert np.isnan(ap_paper["a"]) and ap_paper["b"] == pytest.approx(1.0)  # the 60-point instance is not scored
    assert ap_smoke["a"] == pytest.approx(1.0) and ap_smoke["b"] == pytest.approx(1.0)
