"""Every number of the paper's recipes (SPEC.md's tables), read back through `t4p config show`,
and schedules in the paper's units: epochs turned into steps on the prepared training split."""

from __future__ import annotations

import json
import math

import pytest

from t4p.cli import main as t4p_main
from t4p.config import ConfigError, steps_per_epoch, with_epoch_size
from t4p.data.datasets import make_dataset
from t4p.recipes import get_recipe
from t4p.train.loop import StepBatchSampler
from tests._data_helpers import S3DIS_ROOMS, write_tiny_s3dis

# SPEC.md / the paper, by recipe: dotted key -> value (Sec. 4.1, 4.2, Tables 2, 7, 8).
PAPER = {
    "pretrain_scannet": {
        "data.frame_skip": 25, "data.image_height": 240, "data.image_width": 320, "data.voxel_size": 0.025,
        "data.corr_depth_tol": 0.02, "model.clip.template": "point cloud of {}.", "model.clip.arch": "RN50",
        "model.clip.dense_mode": "attnpool", "loss.tau": 0.4, "loss.depth": True,
        "optim.lr": 0.1, "optim.momentum": 0.9, "optim.schedule": "exp", "optim.exp_gamma": 0.99,
        "optim.exp_every": 1000, "train.epochs": 2, "train.max_steps": 0, "train.batch_size": 32,
        "train.task": "pretrain", "data.classes": "scannet20",
        # SPEC's backbone (ME's MinkUNet34C) and TQM defaults; 4096 pairs per frame as PPKT/SLidR
        "model.stem_kernel": 5, "model.stem_channels": 32, "model.enc_planes": [32, 64, 128, 256],
        "model.enc_blocks": [2, 3, 4, 6], "model.dec_planes": [256, 128, 96, 96], "model.dec_blocks": [2, 2, 2, 2],
        "model.tqm": True, "model.tqm_heads": 1, "model.tqm_mlp_ratio": 4.0, "model.tqm_alpha_init": 1.0,
        "model.tqm_beta_init": 0.0, "loss.max_pairs": 4096,
    },
    "s3dis_semseg": {
        "data.voxel_size": 0.05, "data.val_fraction": 0.0, "data.test_area": 5, "data.train_areas": [1, 2, 3, 4, 6],
        "optim.lr": 0.1, "optim.schedule": "poly", "optim.poly_power": 0.9, "optim.weight_decay": 1e-4,
        "optim.wd_exclude_norm_bias": False,
        "train.epochs": 0, "train.max_steps": 60000, "train.batch_size": 48, "loss.aux": True, "loss.aux_tau": 0.07,
        "model.prompt_learning": True, "model.n_ctx": 8, "model.tqm": True, "finetune.eval_split": "test",
        "data.classes": "s3dis13", "model.ctx_init": "point cloud of", "data.aug_flip": True, "data.aug_rotate_z": True,
    },
    "votenet_sunrgbd": {
        "data.num_points": 20000, "data.voxel_size": 0.025, "data.label_version": "v1", "data.val_fraction": 0.0,
        "train.batch_size": 64, "train.epochs": 180, "train.max_steps": 0, "optim.lr": 0.001,
        "optim.schedule": "cosine", "optim.warmup_epochs": 0, "loss.aux_tau": 0.07, "model.n_ctx": 8,
        "det.oriented_boxes": True, "data.classes": "sunrgbd10", "data.aug_rotate_max": math.pi / 6,
        "data.aug_scale_min": 0.85, "data.aug_scale_max": 1.15, "data.aug_flip_y": False,
    },
    "votenet_scannet": {
        "data.num_points": 40000, "data.voxel_size": 0.025, "data.val_fraction": 0.0, "train.batch_size": 32,
        "train.epochs": 180, "train.max_steps": 0, "optim.warmup_epochs": 15, "optim.lr": 0.001,
        "optim.schedule": "cosine", "det.oriented_boxes": False, "data.classes": "scannet18",
        "model.n_ctx": 8, "loss.aux_tau": 0.07, "data.aug_rotate_max": math.radians(5), "data.aug_flip_y": True,
        "data.aug_scale_min": 1.0, "data.aug_scale_max": 1.0,
    },
}
PAPER["s3dis_insseg"] = {**PAPER["s3dis_semseg"], "train.task": "insseg", "insseg.min_region_size": 100}


def _show(capsys, *argv: str) -> dict:
    assert t4p_main(["config", "show", *argv, "--flat"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("recipe", sorted(PAPER))
def test_config_show_prints_the_papers_numbers(recipe, capsys):
    shown = _show(capsys, recipe)
    wrong = {k: (shown[k], v) for k, v in PAPER[recipe].items() if shown[k] != v}
    assert not wrong, f"{recipe}: key: (shown, paper) {wrong}"


def test_both_epochs_and_steps_is_a_config_error():
    with pytest.raises(ConfigError, match="train.epochs=2 and train.max_steps=100 are both set"):
        get_recipe("pretrain_scannet", ["train.max_steps=100"])
    assert get_recipe("pretrain_scannet", ["train.epochs=0", "train.max_steps=100"]).train.max_steps == 100
    with pytest.raises(ConfigError, match="optim.warmup_epochs=15 and optim.warmup_steps=7"):
        get_recipe("votenet_scannet", ["optim.warmup_steps=7"])


def test_epochs_become_steps_by_hand():
    cfg = with_epoch_size(get_recipe("votenet_scannet"), 1201)
    assert (cfg.train.max_steps, cfg.optim.warmup_steps) == (180 * 38, 15 * 38)  # ceil(1201 / 32) = 38
    cfg = with_epoch_size(get_recipe("votenet_sunrgbd"), 5285)
    assert cfg.train.max_steps == 180 * 83  # ceil(5285 / 64) = 83
    replay = get_recipe("votenet_sunrgbd", ["train.epoch_size=5285", f"train.max_steps={180 * 83}"])
    assert replay.train.max_steps == 180 * 83  # a resolved config (as logged) loads back


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize(("n", "batch", "epochs"), [(10, 4, 3), (12, 4, 2), (7, 2, 1)])
def test_derived_steps_cover_every_sample_epochs_times(n, batch, epochs, world_size):
    """The oracle: ceil(N / B) * epochs steps of a global batch B, over all W ranks, show each of the N
    samples at least ``epochs`` times, with at most one rounded-up batch per epoch."""
    steps = epochs * math.ceil(n / batch)
    cfg = with_epoch_size(get_recipe("smoke_semseg", [f"train.batch_size={batch}", f"train.epochs={epochs}",
                                                      "train.max_steps=0"]), n)
    assert cfg.train.max_steps == steps == epochs * steps_per_epoch(n, batch)
    seen = [0] * n
    for rank in range(world_size):
        sampler = StepBatchSampler(n, cfg, rank, world_size, start_step=0)
        for micro in sampler:
            for i in micro:
                seen[i] += 1
    assert min(seen) >= epochs and sum(seen) == steps * batch
    assert steps * batch - epochs * n < epochs * batch  # at most one partial batch per epoch beyond E * N


def test_config_show_derives_steps_from_a_prepared_dataset(tmp_path, capsys):
    root = write_tiny_s3dis(tmp_path / "s3dis", {a: min(n, 5) for a, n in S3DIS_ROOMS.items()})
    args = [f"data.root={root}", f"data.prepared_dir={tmp_path / 'prep'}", "train.epochs=3", "train.max_steps=0",
            "train.batch_size=4"]
    shown = _show(capsys, "s3dis_semseg", *args)
    assert shown["train.max_steps"] == 0  # not prepared yet: config show never prepares
    make_dataset(get_recipe("s3dis_semseg", args), "train")  # 25 rooms in Areas 1-4, 6
    shown = _show(capsys, "s3dis_semseg", *args)
    assert (shown["train.epoch_size"], shown["train.max_steps"]) == (25, 3 * 7)


def test_the_loop_derives_steps_from_its_training_split(tmp_path):
    from t4p.train.loop import run

    cfg = get_recipe("smoke_semseg", [f"train.out_dir={tmp_path}", "train.epochs=1", "train.max_steps=0",
                                      "train.num_threads=1", "data.val_fraction=0"])
    metrics = run(cfg)
    assert metrics["step"] == math.ceil(5 / 2)  # the 5 synthetic rooms of the training areas, batch 2
    assert metrics["epoch"] == pytest.approx(3 * 2 / 5)
