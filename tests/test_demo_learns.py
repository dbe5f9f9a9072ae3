"""The demo learns (issue 19): its from-scratch row (T5-1) reaches a real mIoU on the held-out synthetic rooms.

The fine-tuning is exactly the demo's (``sweeps/ablation.py``'s DEMO_FINETUNE, then the semseg benchmark's
demo overrides, on its demo recipe; the T5-1 row of the paper grid, seed 0), run by the one training loop
without Ray. Chance on the 13 S3DIS
classes is far below: 8 demo steps, as the demo had before, gave 5-14 %.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from t4p.recipes import get_recipe
from t4p.sweep.benchmarks import benchmark
from t4p.sweep.rows import ABLATION_ROWS
from t4p.train.loop import run

REPO = Path(__file__).resolve().parents[1]


def _demo_finetune() -> list[str]:
    spec = importlib.util.spec_from_file_location("sweeps_ablation", REPO / "sweeps" / "ablation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [o for o in module.DEMO_FINETUNE if not o.startswith("sweep.")]


@pytest.mark.slow
def test_the_demos_from_scratch_row_learns(tmp_path):
    spec = benchmark("semseg")
    overrides = [*ABLATION_ROWS["T5-1"].finetune, *_demo_finetune(), *spec.demo_overrides, "train.seed=0",
                 f"train.out_dir={tmp_path}"]
    cfg = get_recipe(spec.demo_recipe, overrides)
    assert cfg.finetune.eval_split == "test" and cfg.train.max_steps >= 40  # what the demo reports on
    metrics = run(cfg)
    assert metrics["test_miou"] >= 0.25, metrics  # measured 0.365 (seed 0) on the loop alone
