"""Acceptance: a short instance-segmentation fine-tuning run on synthetic S3DIS-layout rooms.

The rooms come from ``t4p.data.synthetic`` and are read back through the real S3DIS raw reader
(``Area_N/<room>/Annotations/<class>_<k>.txt``); the model is the Text4Point fine-tuning model
(TQM, CoOp prompt learning, auxiliary loss) with the tiny random-weight CLIP and the reduced
SR-UNet of ``smoke_insseg``, trained on CPU with fixed seeds by the one training loop and evaluated
on the held-out Area 5 room on its original points.
"""

from __future__ import annotations

import time

import pytest
import torch

from t4p.recipes import get_recipe
from t4p.train.checkpoint import load_checkpoint
from t4p.train.loop import run

# The threshold: the held-out room has GT instances of 11 classes (mAP@0.5 averages over them).
# Floor and ceiling are single, isolated instances: any model whose semantics are roughly right
# recovers both (AP 1 each, 2/11 = 0.18); an untrained model scores 0. AP@0.5 >= 0.25 needs more
# than that: at least one further class (bookcase, table, chair, wall...) found as instances
# with IoU > 0.5, i.e. the semantic and offset heads have learned beyond the trivial classes.
# Below ~0.25 the run would not show instance segmentation working; far above it is out of reach of
# a ~2-minute CPU run of a 0.1 M-parameter backbone (the paper reaches 62.7 after 60k steps on S3DIS).
# Measured on the real loop (t4p.train.loop.run, as sweeps run it): AP@0.5 0.46 (mAP 0.37) after 160 steps,
# ~60 s on 2 threads; the threshold stays where the issue put it.
AP50_THRESHOLD = 0.25
OVERRIDES = [
    "data.voxel_size=0.1",  # coarser than smoke_insseg's 8 cm: half the voxels, the run fits in ~2 minutes
    "train.batch_size=1",
    "optim.lr=0.1",
    "insseg.offset_weight=0.3",  # at weight 1 the metre-scale L1 of walls slowed the semantic head (AP@0.5 0.20)
    "insseg.cluster_radius=0.2",  # two voxels: a short run's offsets are rough, fragments must stay joined
    "insseg.cluster_min_points=30",
]
STEPS = 160


@pytest.mark.slow
def test_short_finetune_reaches_ap50(tmp_path):
    torch.set_num_threads(2)
    cfg = get_recipe("smoke_insseg", [f"train.out_dir={tmp_path}", f"train.max_steps={STEPS}", *OVERRIDES,
                                      f"train.eval_every={STEPS}", f"train.checkpoint_every={STEPS}"])
    t0 = time.perf_counter()
    metrics = run(cfg)  # the real loop, as sweeps run it
    elapsed = time.perf_counter() - t0
    print(f"insseg smoke: {elapsed:.0f} s, " + " ".join(f"{k}={metrics[f'test_{k}']:.3f}"
                                                        for k in ("map50", "map", "mprec", "mrec")))
    history = load_checkpoint(tmp_path / "checkpoint" / "checkpoint.pt")["history"]
    assert history[-10:].mean() < history[:10].mean()
    assert metrics["test_map50"] >= AP50_THRESHOLD, {k: v for k, v in metrics.items() if k.startswith("test_ap50")}


@pytest.mark.slow
def test_main_loop_runs_insseg(tmp_path):
    """``train.task=insseg`` through ``t4p.train.loop.run``: offset terms in the loss, AP metrics reported."""
    torch.set_num_threads(2)
    cfg = get_recipe("smoke_insseg", [f"train.out_dir={tmp_path}", "train.max_steps=2", *OVERRIDES])
    metrics = run(cfg)
    assert {"loss_offset", "loss_dir", "loss_seg"} <= set(metrics)
    for key in ("test_map", "test_map50", "test_mprec", "test_mrec", "test_ap50/chair"):
        assert key in metrics
    assert (tmp_path / "checkpoint" / "checkpoint.pt").exists()
