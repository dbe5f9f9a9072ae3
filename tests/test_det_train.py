"""VoteNet on SR-UNet trains on synthetic VoteNet-layout scenes (tiny CLIP, reduced backbone, CPU)."""

from __future__ import annotations

import math

import pytest
import torch


def _cfg(tmp_path, *extra):
    from t4p.recipes import get_recipe

    return get_recipe("smoke_det", [f"train.out_dir={tmp_path}", *extra])


def test_one_step_reaches_every_head(tmp_path):
    """Finite loss terms; gradients reach the backbone, the text path, voting and proposal modules."""
    from t4p.data.datasets import make_dataset
    from t4p.tasks.det import det_terms
    from t4p.train.loop import build_model

    torch.manual_seed(0)
    cfg = _cfg(tmp_path, "data.synth_scenes=3", "det.num_seeds=64", "det.num_proposals=16")
    ds = make_dataset(cfg, "train")
    model, _ = build_model(cfg)
    batch = ds.collate([ds[0], ds[1 % len(ds)]])
    out = model(batch)
    assert out.objectness.shape == (2, 16, 2) and out.vote_xyz.shape == (2, 64, 3)
    terms = det_terms(model, batch, out, cfg)
    assert set(terms) >= {"loss_vote", "loss_objectness", "loss_box", "loss_sem", "loss_aux"}
    assert all(math.isfinite(v.item()) for v in terms.values())
    sum(terms.values()).backward()
    for name in ("backbone", "vote", "proposal"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name) and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    model.eval()
    with torch.no_grad():
        preds = model.predict(model(batch))
    assert len(preds) == 2 and all(p.shape[1] == 9 for p in preds)


@pytest.mark.slow
def test_short_training_reaches_map(tmp_path):
    """A short run of the real loop (``t4p.train.loop.run``, as sweeps run it) fits its synthetic training
    scenes to mAP@0.25 >= 0.25 (seeded, CPU, ~2-3 min).

    Why 0.25: the 4 synthetic SUN RGB-D classes present (table, sofa, chair, bookshelf) are scored
    separately; the untrained detector scores ~0 (its votes sit on the seeds, ~0.95 m L1 from the
    centres, so its cluster centres rarely come within the 0.3 m objectness radius of an object centre
    and nothing is ranked above background), and a box must overlap its object by 25 % in 3D to count.
    0.25 therefore needs votes that converge on object centres, objectness that ranks them, boxes sized
    from the class mean sizes with the right heading convention and a working decoding/NMS/AP chain; it
    is far below a perfect fit (1.0, reached by decoding the loss targets in test_det_votenet.py).
    What this is not: a generalisation claim. Evaluation is on the training scenes with all their
    points (the smoke recipe's ``data.num_points=0``), so the run can fit the same seeds it trained on;
    with fresh 20k-point subsamples the same 300 steps end at mAP@0.25 0.01-0.05 (docs/design_notes.md).
    Measured on the loop: 0.39 after 300 steps (table 0.40, chair 0.58, bookshelf 0.40, sofa 0.17), ~85 s on
    2 threads (the compact test-only loop this replaced reached 0.38).
    """
    from t4p.train.loop import run

    torch.set_num_threads(2)
    steps = 300
    cfg = _cfg(tmp_path, f"train.max_steps={steps}", "data.augment=false", "finetune.eval_split=train",
               f"train.eval_every={steps}", f"train.checkpoint_every={steps}")
    metrics = run(cfg)
    print({k: round(v, 3) for k, v in metrics.items() if k.startswith("train_")})
    assert metrics["train_map25"] >= 0.25, metrics
