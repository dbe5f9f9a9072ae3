"""Old config key names still load (issue 16 split ``finetune`` into ``finetune``, ``insseg`` and ``det``,
made ``finetune.det_optimizer`` into ``optim.name`` and renamed ``sweep.task`` to ``sweep.benchmark``).

The files under tests/fixtures/legacy_keys/ were written by the code before the split (see the README
there); the oracle for each new value is the old file's own entry, read as plain JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t4p.config import RENAMED_KEYS, from_flat_dict, from_json, to_flat_dict, valid_keys
from t4p.recipes import get_recipe

LEGACY = Path(__file__).parent / "fixtures" / "legacy_keys"


def _flat_old(path: Path) -> dict:
    data = json.loads(path.read_text())
    if "finetune" in data and isinstance(data["finetune"], dict):  # nested: the MLflow config.json artifact
        return {f"{section}.{k}": v for section, values in data.items() for k, v in values.items()
                if not isinstance(v, dict)}
    return data


def test_every_renamed_key_points_at_a_key_of_today():
    assert set(RENAMED_KEYS.values()) <= set(valid_keys())
    assert not set(RENAMED_KEYS) & set(valid_keys())


def test_nested_config_artifact_loads_with_a_warning():
    path = LEGACY / "det_config.json"
    old = _flat_old(path)
    with pytest.warns(FutureWarning, match="finetune.det_mlp_width -> det.mlp_width"):
        cfg = from_json(path.read_text())
    assert cfg.det.mlp_width == old["finetune.det_mlp_width"] == 16
    assert cfg.det.num_proposals == old["finetune.num_proposals"] == 16
    assert cfg.det.num_seeds == old["finetune.num_seeds"] == 64
    assert cfg.det.num_heading_bins == old["finetune.num_heading_bins"] == 6
    assert cfg.det.nms_iou == old["finetune.det_nms_iou"] == 0.3
    assert cfg.optim.name == old["finetune.det_optimizer"] == "sgd"  # a detection config: its optimiser
    assert cfg.sweep.benchmark == old["sweep.task"]
    assert cfg.model.enc_planes == tuple(old["model.enc_planes"]) == (8, 8, 8, 8)


def test_flat_config_of_another_task_drops_the_detection_optimiser():
    old = json.loads((LEGACY / "insseg_config_flat.json").read_text())
    assert old["finetune.det_optimizer"] == "adam"  # every old config carried it; segmentation ran SGD
    with pytest.warns(FutureWarning):
        cfg = from_flat_dict(old)
    assert (cfg.insseg.offset_weight, cfg.insseg.cluster_radius, cfg.insseg.min_region_size) == (
        old["finetune.offset_weight"], old["finetune.cluster_radius"], old["finetune.min_region_size"]) == (
        0.5, 0.05, 20)
    assert cfg.optim.name == "sgd"


def test_checkpoint_of_the_old_code_loads_into_todays_model(tmp_path):
    from t4p.commands.checkpoints import load_model_from_checkpoint
    from t4p.train.checkpoint import load_checkpoint

    path = LEGACY / "det_checkpoint.pt"
    with pytest.warns(FutureWarning):
        cfg = from_json(load_checkpoint(path)["config"])
    cfg.train.out_dir = str(tmp_path)  # the synthetic scenes (class mean sizes) are generated here
    cfg.data.root = cfg.data.prepared_dir = ""
    model, ckpt = load_model_from_checkpoint(cfg, str(path))  # raises if a tensor does not fit
    assert ckpt["step"] == 1
    assert model.num_heading_bins == 6 and model.proposal is not None


def test_sweep_state_file_of_the_old_code_resumes_with_its_settings():
    from t4p.sweep.trial import SweepContext

    state = json.loads((LEGACY / "sweep_state.json").read_text())
    old = state["context"]["finetune_base"]
    with pytest.warns(FutureWarning):
        ctx = SweepContext(**state["context"])
        cfg = ctx.base()
        stages = [from_flat_dict(flat) for flat in ctx.stages.values()]
    assert cfg.sweep.benchmark == old["sweep.task"] == "det-scannet"
    assert cfg.det.vote_weight == old["finetune.det_vote_weight"] == 2.0
    assert cfg.det.oriented_boxes is old["finetune.oriented_boxes"] is False
    assert cfg.optim.name == old["finetune.det_optimizer"] == "adam"
    assert stages and all(s.train.task == "pretrain" for s in stages)
    # nothing else moved: every key that was not renamed keeps its value
    new = to_flat_dict(cfg)
    kept = {k: v for k, v in old.items() if k not in RENAMED_KEYS and k != "finetune.det_optimizer"}
    assert {k: new[k] for k in kept} == {k: tuple(v) if isinstance(v, list) else v for k, v in kept.items()}


def test_old_names_on_the_command_line():
    with pytest.warns(FutureWarning, match="'finetune.num_seeds' is now 'det.num_seeds'"):
        cfg = get_recipe("smoke_det", ["finetune.num_seeds=32", "finetune.det_optimizer=sgd", "sweep.task=det-sunrgbd"])
    assert (cfg.det.num_seeds, cfg.optim.name, cfg.sweep.benchmark) == (32, "sgd", "det-sunrgbd")
