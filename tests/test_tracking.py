"""t4p.tracking against a real MLflow sqlite store in a temporary folder."""

from __future__ import annotations

import json

import mlflow
import pytest

from t4p.config import Config
from t4p.recipes import get_recipe
from t4p.tracking import Tracker, clean_params, default_uri, resolve_uri, run_tags


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    return default_uri(tmp_path_factory.mktemp("mlflow"))  # one sqlite store: migrations take seconds


@pytest.fixture()
def tracker(store_uri, request):
    return Tracker(store_uri, request.node.name)


def test_default_uri_is_absolute_sqlite_under_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///rel/x.db")
    assert resolve_uri() == f"sqlite:///{tmp_path.resolve()}/rel/x.db"
    cfg = Config()
    cfg.tracking.uri = "http://127.0.0.1:5000"
    assert resolve_uri(cfg) == "http://127.0.0.1:5000"


def test_reopening_a_run_by_tags_never_duplicates(tracker):
    mlflow.set_tracking_uri(tracker.uri)
    parent = tracker.open_run("sweep", {"sweep_id": "s1", "stage": "sweep"})
    child = tracker.open_run("T5-1-s0", {"sweep_id": "s1", "trial": "T5-1-s0"}, parent)
    tracker.log_metrics(child, {"loss": 1.0}, 1)
    tracker.finish(child, "KILLED")
    again = tracker.open_run("T5-1-s0", {"sweep_id": "s1", "trial": "T5-1-s0"}, parent)
    assert again == child and tracker.status(child) == "RUNNING"
    tracker.finish(child)
    runs = mlflow.search_runs(experiment_ids=[tracker.experiment_id], filter_string="tags.trial = 'T5-1-s0'",
                              output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["mlflow.parentRunId"] == parent


def test_params_are_flat_strings_without_secrets(tracker, monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "s3cr3t-value-123")
    cleaned = clean_params({"model.enc_planes": (8, 16), "x.api_key": "k", "long": "y" * 7000,
                            "data.root": "/data/s3cr3t-value-123/x"})
    assert cleaned["model.enc_planes"] == "8,16"
    assert "x.api_key" not in cleaned
    assert len(cleaned["long"]) == 6000
    assert "s3cr3t" not in cleaned["data.root"]
    cfg = get_recipe("smoke_semseg")
    run = tracker.open_run("r", {"trial": "r"})
    tracker.log_config(run, cfg)
    tracker.log_config(run, cfg)  # reopened runs: params are immutable, logging again must not fail
    got = tracker.client.get_run(run)
    assert got.data.params["optim.lr"] == str(cfg.optim.lr)
    assert got.data.params["model.enc_planes"] == ",".join(map(str, cfg.model.enc_planes))
    path = tracker.client.download_artifacts(run, "config.json")
    assert json.loads(open(path).read())["optim"]["lr"] == cfg.optim.lr


def test_run_tags_say_whether_clip_is_real():
    tags = run_tags(get_recipe("smoke_semseg"), stage="finetune", row="T5-1", seed=1)
    assert tags["clip_weights_real"] == "false" and tags["synthetic_data"] == "true"
    assert tags["row"] == "T5-1" and tags["seed"] == "1" and tags["version.mlflow"] == mlflow.__version__
    assert run_tags(get_recipe("s3dis_semseg"), stage="x")["clip_weights_real"] == "true"


def test_a_tracking_uri_with_credentials_in_the_environment_is_refused(monkeypatch):
    from t4p.config import ConfigError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://bob:hunter22@mlflow.example.org")
    with pytest.raises(ConfigError) as err:
        resolve_uri(Config())
    assert "MLFLOW_TRACKING_URI" in str(err.value) and "hunter22" not in str(err.value)
