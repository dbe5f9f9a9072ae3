"""Replaying a logged config (``--config FILE``) and the report script's read-only use of the tracking store.

Oracles: the config a command runs is compared with ``apply_overrides(original, overrides)`` of the
config that was written (``to_json``, nested as MLflow's ``config.json`` artifact or flat as a checkpoint
stores it), and a run directory's ``config.json`` with the config its own checkpoint carries. The report
test looks into the sqlite store with MLflow's own client afterwards.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from t4p.cli import main
from t4p.config import apply_overrides, from_json, to_json
from t4p.recipes import get_recipe

REPO = Path(__file__).resolve().parents[1]
LEGACY = Path(__file__).parent / "fixtures" / "legacy_keys"
ORIGINAL = ["train.max_steps=3", "train.eval_every=3", "optim.lr=0.02", "model.sparse_backend=torch"]


class _Captured(Exception):
    """Raised by a stand-in for the training / evaluation code, carrying the config it was given."""


def _capture(*args, **_kwargs):
    raise _Captured(*args)


@pytest.fixture
def logged(tmp_path) -> tuple[Path, object]:
    cfg = get_recipe("smoke_semseg", [*ORIGINAL, f"train.out_dir={tmp_path / 'run'}"])
    path = tmp_path / "config.json"
    path.write_text(to_json(cfg))  # nested: what tracking logs as the config.json artifact
    return path, cfg


@pytest.mark.parametrize("flat", [False, True])
def test_config_show_replays_a_logged_config_with_overrides(tmp_path, capsys, flat):
    cfg = get_recipe("smoke_semseg", ORIGINAL)
    path = tmp_path / "config.json"
    path.write_text(to_json(cfg, flat=flat))
    assert main(["config", "show", "--config", str(path), "optim.lr=0.05", "train.seed=7", "--flat"]) == 0
    shown = from_json(capsys.readouterr().out)
    assert shown == apply_overrides(cfg, ["optim.lr=0.05", "train.seed=7"])
    assert shown.optim.lr == 0.05 and shown.train.max_steps == 3


def test_finetune_runs_the_replayed_config(monkeypatch, logged):
    path, cfg = logged
    monkeypatch.setattr("t4p.train.loop.run", _capture)
    with pytest.raises(_Captured) as got:
        main(["finetune", "--config", str(path), "optim.lr=0.05"])
    assert got.value.args[0] == apply_overrides(cfg, ["optim.lr=0.05"])


def test_a_recipe_fills_only_the_keys_a_config_file_lacks(monkeypatch, tmp_path):
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"optim": {"lr": 0.07}, "train": {"max_steps": 5}}))
    monkeypatch.setattr("t4p.train.loop.run", _capture)
    with pytest.raises(_Captured) as got:
        main(["finetune", "smoke_semseg", "--config", str(path), "train.seed=3"])
    expected = get_recipe("smoke_semseg", ["optim.lr=0.07", "train.max_steps=5", "train.seed=3"])
    assert got.value.args[0] == expected


def test_evaluate_takes_the_config_and_a_checkpoint(monkeypatch, logged, tmp_path):
    path, cfg = logged
    monkeypatch.setattr("t4p.commands.checkpoints.load_model_from_checkpoint", _capture)
    with pytest.raises(_Captured) as got:
        main(["evaluate", "--config", str(path), str(tmp_path / "ckpt.pt"), "finetune.eval_split=train"])
    assert got.value.args == (apply_overrides(cfg, ["finetune.eval_split=train"]), str(tmp_path / "ckpt.pt"))


def test_old_key_names_in_a_config_file_are_translated(monkeypatch):
    monkeypatch.setattr("t4p.train.loop.run", _capture)
    with pytest.warns(FutureWarning, match="finetune.det_nms_iou -> det.nms_iou"), pytest.raises(_Captured) as got:
        main(["finetune", "--config", str(LEGACY / "det_config.json"), "det.num_proposals=8"])
    cfg = got.value.args[0]
    assert cfg.det.nms_iou == 0.3 and cfg.det.num_proposals == 8 and cfg.optim.name == "sgd"


@pytest.mark.slow
def test_a_run_directory_replays_the_config_its_loop_wrote(tmp_path, monkeypatch):
    """``train.out_dir/config.json`` (written by the loop) holds the config the checkpoint was trained under."""
    out = tmp_path / "pre"
    over = ["train.max_steps=1", "train.checkpoint_every=1", f"train.out_dir={out}", "model.sparse_backend=torch",
            "train.device=cpu"]
    assert main(["pretrain", "smoke_pretrain", *over]) == 0
    from t4p.train.checkpoint import load_checkpoint

    trained = from_json(load_checkpoint(str(out / "checkpoint" / "checkpoint.pt"))["config"])
    monkeypatch.setattr("t4p.train.loop.run", _capture)
    with pytest.raises(_Captured) as got:
        main(["pretrain", "--config", str(out), "train.max_steps=2"])  # the folder: its config.json
    assert got.value.args[0] == apply_overrides(trained, ["train.max_steps=2"])


@pytest.mark.parametrize(("content", "expected"), [
    (None, "does not exist"),
    ("{not json", "not a JSON config"),
    ("[1, 2]", "must be an object"),
    ('{"optim": {"lrr": 0.1}}', "optim.lrr"),
    ('{"optim": {"lr": "fast"}}', "optim.lr"),
])
def test_a_missing_or_bad_config_file_exits_2_naming_it(tmp_path, capsys, content, expected):
    path = tmp_path / "cfg.json"
    if content is not None:
        path.write_text(content)
    for argv in (["finetune", "--config", str(path)], ["config", "show", "--config", str(path)],
                 ["evaluate", "--config", str(path), "ckpt.pt"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert str(path) in err and expected in err, err


def test_a_folder_without_config_json_exits_2_naming_it(tmp_path, capsys):
    assert main(["pretrain", "--config", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "config.json") in err


def test_without_recipe_or_config_exits_2(capsys):
    assert main(["finetune", "optim.lr=0.1"]) == 2
    assert "a recipe or --config" in capsys.readouterr().err
    assert main(["evaluate", "ckpt.pt"]) == 2
    assert "a recipe or --config" in capsys.readouterr().err


def _sweep_script(name: str):
    sys.path.insert(0, str(REPO / "sweeps"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(REPO / "sweeps"))


@pytest.mark.parametrize("script", ["ablation", "search"])
def test_sweep_scripts_replay_a_config(logged, script):
    from t4p.sweep.cli import build_configs

    path, cfg = logged
    module = _sweep_script(script)
    args = module.build_parser().parse_args(["--config", str(path), "--seeds", "3,4", "optim.lr=0.05"])
    ft, _ = build_configs(args)
    assert ft == apply_overrides(cfg, ["optim.lr=0.05", "sweep.seeds=3,4"])


@pytest.mark.parametrize("script", ["ablation", "search"])
def test_sweep_scripts_exit_2_on_a_missing_config(tmp_path, capsys, script):
    module = _sweep_script(script)
    assert module.main(["--config", str(tmp_path / "gone.json"), "--dry-run"]) == 2
    assert str(tmp_path / "gone.json") in capsys.readouterr().err


# --------------------------------------------------------------------------- sweeps/report.py is read-only


def test_report_of_an_unknown_experiment_creates_nothing(tmp_path, capsys):
    from mlflow import MlflowClient

    from t4p.tracking import Tracker

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    Tracker(uri, "t4p-demo")  # a store with one experiment
    report = _sweep_script("report")
    assert report.main(["--experiment", "nope", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "t4p-demo" in err
    names = {e.name for e in MlflowClient(uri).search_experiments()}
    assert "nope" not in names and "t4p-demo" in names


def test_report_without_a_store_creates_none(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    report = _sweep_script("report")
    assert report.main(["--experiment", "t4p-demo"]) == 2  # default store: ./mlruns/mlflow.db
    assert "no tracking store" in capsys.readouterr().err
    assert not (tmp_path / "mlruns").exists()
    gone = tmp_path / "elsewhere" / "mlflow.db"
    assert report.main(["--experiment", "t4p-demo", "--tracking-uri", f"sqlite:///{gone}"]) == 2
    assert str(gone) in capsys.readouterr().err
    assert not gone.parent.exists()


def test_report_on_a_missing_folder_store_creates_none(tmp_path, capsys):
    report = _sweep_script("report")
    for uri in (str(tmp_path / "store"), f"file://{tmp_path / 'store'}"):
        assert report.main(["--experiment", "t4p-demo", "--tracking-uri", uri]) == 2
        assert "no tracking store" in capsys.readouterr().err
        assert not (tmp_path / "store").exists()
