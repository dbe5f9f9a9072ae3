"""`t4p finetune | evaluate | predict` for every fine-tuning task, in-process through ``t4p.cli.main``.

Oracles: ``evaluate`` on the finished run's checkpoint reproduces the run's own final evaluation (the
weights, buffers and config round-trip through the checkpoint); for semantic segmentation, the
overall accuracy computed by hand from ``predict``'s labels on the test room's raw points equals
``evaluate``'s ``test_oa`` (the raw-scene path and the prepared-dataset path see the same scene).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from t4p.cli import main

TINY = ["train.max_steps=2", "train.eval_every=2", "train.checkpoint_every=2", "train.log_every=1",
        "model.sparse_backend=torch", "train.device=cpu"]
HEADLINE = {"smoke_semseg": "test_miou", "smoke_insseg": "test_map50", "smoke_det": "test_map25"}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["smoke_semseg", "smoke_insseg", "smoke_det"])
def test_finetune_evaluate_predict(tmp_path, recipe, capsys):
    over = [*TINY, f"train.out_dir={tmp_path / 'run'}"]
    assert main(["finetune", recipe, *over]) == 0
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())
    ckpt = tmp_path / "run" / "checkpoint" / "checkpoint.pt"
    assert main(["evaluate", recipe, str(ckpt), *over]) == 0
    evaluated = json.loads((tmp_path / "run" / "eval_metrics.json").read_text())
    key = HEADLINE[recipe]
    assert np.isfinite(trained[key]) or np.isnan(trained[key])
    assert evaluated[key] == pytest.approx(trained[key], abs=1e-6, nan_ok=True)

    from t4p.data.datasets import make_dataset
    from t4p.data.prepare import load_arrays
    from t4p.recipes import get_recipe

    room = load_arrays(make_dataset(get_recipe(recipe, over), "test").files[0])
    scene = tmp_path / "scene.npy"
    np.save(scene, np.concatenate([room["xyz"], room["rgb"]], 1).astype(np.float64))
    out = tmp_path / "pred" / "scene_labels.npy"
    assert main(["predict", str(ckpt), str(scene), "--out", str(out)]) == 0
    labels = np.load(out)
    assert labels.shape == (len(room["xyz"]),) and (tmp_path / "pred" / "scene_labels.ply").is_file()
    ply = (tmp_path / "pred" / "scene_labels.ply").read_bytes()
    assert ply.startswith(b"ply\nformat binary_little_endian 1.0\n")  # binary by default (--ply-format ascii)
    assert f"element vertex {len(labels)}\n".encode() in ply[:200]
    if recipe == "smoke_semseg":
        assert len(make_dataset(get_recipe(recipe, over), "test")) == 1  # the smoke test split: one room
        gt = room["labels"]
        valid = gt >= 0
        assert float((labels[valid] == gt[valid]).mean()) == pytest.approx(evaluated["test_oa"], abs=1e-9)
    if recipe == "smoke_insseg":
        instances = np.load(out.with_name("scene_labels_instances.npy"))
        assert instances.shape == labels.shape and instances.min() >= -1
    if recipe == "smoke_det":
        boxes = np.load(out.with_name("scene_labels_boxes.npy"))
        assert boxes.ndim == 2 and boxes.shape[1] == 9
        assert set(np.unique(labels)) <= {-1, *range(10)}


def test_predict_refuses_a_pretraining_checkpoint(tmp_path, capsys):
    over = ["train.max_steps=1", "train.checkpoint_every=1", f"train.out_dir={tmp_path / 'pre'}",
            "model.sparse_backend=torch", "train.device=cpu"]
    assert main(["pretrain", "smoke_pretrain", *over]) == 0
    scene = tmp_path / "scene.npy"
    np.save(scene, np.random.default_rng(0).uniform(0, 2, (100, 6)))
    code = main(["predict", str(tmp_path / "pre" / "checkpoint" / "checkpoint.pt"), str(scene), "--out",
                 str(tmp_path / "x.npy")])
    assert code == 2 and "predicts nothing" in capsys.readouterr().err
