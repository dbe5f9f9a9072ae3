"""The sweep platform on a real local Ray (2 CPUs) with the real training loop and MLflow.

Each test runs the user-facing scripts as subprocesses (as `make demo` and `ray job submit` do)
in a temporary directory, and checks the outcome through MLflow's own search API.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _ray_helpers import mlflow_runs, script_env
from mlflow import MlflowClient

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
TINY = ["train.max_steps=2", "train.eval_every=2", "train.checkpoint_every=2", "train.num_threads=1"]
ABLATION = [
    sys.executable, str(REPO / "sweeps" / "ablation.py"),
    "--recipe", "smoke_semseg", "--pretrain-recipe", "smoke_pretrain",
    "--rows", "T5-3,T5-4", "--seeds", "0,1", "--experiment", "grid",
    "--workers-per-trial", "2", "--cpus-per-worker", "0.5", "--max-concurrent", "2", "--num-cpus", "2",
    *TINY, *[f"pretrain.{o}" for o in TINY],
]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    except ProcessLookupError:
        pass
    proc.wait()


def test_ablation_grid_ddp_interrupt_resume_and_report(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    log1 = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(ABLATION, cwd=tmp_path, env=script_env(), stdout=log1, stderr=subprocess.STDOUT,
                            start_new_session=True)
    finished_before: dict[str, int] = {}
    try:
        deadline = time.time() + 1200  # generous: fits take minutes on a loaded 2-core box
        while time.time() < deadline and proc.poll() is None:
            time.sleep(3)
            if not (tmp_path / "ray_results" / "t4p_sweeps" / "grid-ablation.json").exists():
                continue  # the driver writes it after creating the store: never race its migrations
            try:
                runs = mlflow_runs(uri, "grid")
            except Exception:  # noqa: BLE001 - experiment not created yet / db busy
                continue
            done = [r for r in runs if r.data.tags.get("stage") == "finetune" and r.info.status == "FINISHED"]
            if done:
                finished_before = {r.info.run_id: r.info.end_time for r in done}
                break
    finally:
        _kill_group(proc)  # SIGKILL mid-sweep: no chance to clean up
    first_log = (tmp_path / "first.log").read_text()
    assert finished_before, "no fine-tuning trial finished before the deadline:\n" + first_log[-3000:]

    second = subprocess.run([*ABLATION, "--resume"], cwd=tmp_path, env=script_env(), capture_output=True, text=True,
                            timeout=1200)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert "report:" in second.stdout and "mlflow ui --backend-store-uri sqlite:///" in second.stdout

    runs = mlflow_runs(uri, "grid")
    parents = [r for r in runs if r.data.tags.get("stage") == "sweep"]
    assert len(parents) == 1, "resume must reopen the parent run, not create one"
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    finetune = [r for r in children if r.data.tags["stage"] == "finetune"]
    pretrain = [r for r in children if r.data.tags["stage"] == "pretrain"]
    assert sorted(r.data.tags["trial"] for r in finetune) == ["T5-3-s0", "T5-3-s1", "T5-4-s0", "T5-4-s1"]
    assert len(pretrain) == 2  # T5-3 and T5-4 share one pre-training per seed: reused, not repeated
    assert len({r.data.tags["stage_hash"] for r in pretrain}) == 2
    assert all(r.info.status == "FINISHED" for r in runs), [(r.data.tags.get("trial"), r.info.status) for r in runs]
    for run in finetune:
        assert run.data.tags["stage_hash"] in {p.data.tags["stage_hash"] for p in pretrain}
        assert run.data.tags["checkpoint_uri"] and "final/test_miou" in run.data.metrics
        assert run.data.tags["clip_weights_real"] == "false"
        history = MlflowClient(uri).get_metric_history(run.info.run_id, "loss")
        assert history, "per-step metrics must be logged"
    for run_id, end_time in finished_before.items():  # finished before the kill: not rerun
        assert MlflowClient(uri).get_run(run_id).info.end_time == end_time

    # the report's numbers are the mean/std over seeds of the runs' final test mIoU (percent)
    report_md = Path(second.stdout.split("report: ")[1].split()[0])
    rows = {r["row"]: r for r in csv.DictReader(report_md.with_suffix(".csv").open())}
    for row in ("T5-3", "T5-4"):
        values = np.array([r.data.metrics["final/test_miou"] * 100 for r in finetune if r.data.tags["row"] == row])
        assert abs(float(rows[row]["miou_mean"]) - values.mean()) < 1e-3
        assert abs(float(rows[row]["miou_std"]) - values.std(ddof=1)) < 1e-3
    assert "not comparable to the paper" in report_md.read_text()

    # stage reuse across sweeps: a new sweep needing the same pre-training plans to run none
    dry = subprocess.run([*ABLATION[:-8], "--rows", "T5-5", "--seeds", "0", "--dry-run",
                          *[f"pretrain.{o}" for o in TINY]], cwd=tmp_path, env=script_env(),
                         capture_output=True, text=True, timeout=120)
    assert "distinct pre-trainings: 1 (0 to run)" in dry.stdout, dry.stdout + dry.stderr


def test_optuna_search_with_asha(tmp_path):
    """ASHA stops a trial; the search tunes row T5-3, so its pre-training runs first and every trial starts from it."""
    cmd = [
        sys.executable, str(REPO / "sweeps" / "search.py"), "--recipe", "smoke_semseg", "--experiment", "search",
        "--trials", "4", "--max-concurrent", "2", "--workers-per-trial", "1", "--cpus-per-worker", "1",
        "--num-cpus", "2", "--no-test", "--rows", "T5-3", "--pretrain-recipe", "smoke_pretrain",
        # The reported lr is monotone in the trial's lr, and the first three trials come in descending
        # lr: the third starts only after one of the first two has recorded rung 2 with a higher lr, so
        # ASHA (reduction 2) must stop it there, whatever order the two concurrent trials report in.
        "--metric", "lr", "--param", "optim.lr=log:1e-4:0.5",
        "--start", "optim.lr=0.5", "--start", "optim.lr=0.05", "--start", "optim.lr=0.0005",
        "train.max_steps=6", "train.eval_every=2", "train.checkpoint_every=2", "train.num_threads=1",
        *[f"pretrain.{o}" for o in TINY],
    ]
    out = subprocess.run(cmd, cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "best config (lr = " in out.stdout
    assert "starts from the pre-trained checkpoint of row T5-3: stage " in out.stdout + out.stderr
    runs = mlflow_runs(f"sqlite:///{tmp_path}/mlruns/mlflow.db", "search")
    parent = next(r for r in runs if r.data.tags.get("stage") == "sweep")
    trials = [r for r in runs if r.data.tags.get("stage") == "finetune"]
    assert len(trials) == 4
    (pre,) = [r for r in runs if r.data.tags.get("stage") == "pretrain"]
    stage = pre.data.tags["stage_hash"]
    assert parent.data.tags["pretrain_stage"] == stage
    assert {r.data.params["finetune.init"] for r in trials} == {str(tmp_path / "t4p_stages" / stage)}
    assert all(r.data.params["model.tqm"] == "True" for r in trials)  # the row's fine-tuning overrides
    third = next(r for r in trials if abs(float(r.data.params["optim.lr"]) - 0.0005) < 1e-12)
    assert third.data.tags.get("early_stopped") == "true", "ASHA did not stop the third (lowest-lr) start point"
    assert third.data.tags.get("stopped_at_step") == "2"
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.params["finetune.eval_split"] == "val" for r in trials)  # never the test area
    best = max(trials, key=lambda r: float(r.data.params["optim.lr"]))
    logged = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db").download_artifacts(
        parent.info.run_id, "best_config.json", str(tmp_path))
    best_lr = json.loads(Path(logged).read_text())["optim.lr"]
    assert abs(best_lr - float(best.data.params["optim.lr"])) < 1e-9


@pytest.mark.parametrize("task, paper", [("insseg", "59.3"), ("det-scannet", "35.4")])
def test_ablation_task_runs_and_reports(tmp_path, task, paper):
    """``--benchmark`` runs the grid's rows on the task's model; the report has its metrics and the paper's column."""
    cmd = [sys.executable, str(REPO / "sweeps" / "ablation.py"), "--demo", "--benchmark", task, "--rows", "T5-1",
           "--seeds", "0", "--experiment", "task", "--num-cpus", "2", *TINY]
    out = subprocess.run(cmd, cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    runs = mlflow_runs(f"sqlite:///{tmp_path}/mlruns/mlflow.db", "task")
    (run,) = [r for r in runs if r.data.tags.get("stage") == "finetune"]
    assert run.info.status == "FINISHED" and run.data.params["sweep.benchmark"] == task
    key = "final/test_map50" if task == "insseg" else "final/test_map50"
    assert 0.0 <= run.data.metrics[key] <= 1.0
    report_md = Path(out.stdout.split("report: ")[1].split()[0])
    (row,) = csv.DictReader(report_md.with_suffix(".csv").open())
    label = "mAP@0.5"
    assert row["row"] == "T5-1" and row[f"{label} (paper)"] == paper  # Table 2 / Table 8's SR-UNet baseline
    assert row[f"{label} (ours)"] == f"{100 * run.data.metrics[key]:.1f} ± 0.0"


def test_sigterm_closes_every_run_and_resume_finishes_without_duplicates(tmp_path):
    """SIGTERM to the driver (``ray job stop`` sends it to the entrypoint's process group) once a trial's run
    is RUNNING: every run of the sweep ends KILLED or FINISHED, none RUNNING; ``--resume`` then finishes the
    sweep reopening the same runs.

    Only the driver gets the signal: here it starts a local Ray whose raylet shares its process group, and
    a signalled raylet makes Ray's core worker end the driver (exit 1) before any Python handler can run;
    under ``ray job submit`` the raylet belongs to the cluster, not to the job's process group."""
    cmd = [sys.executable, str(REPO / "sweeps" / "ablation.py"), "--recipe", "smoke_semseg",
           "--pretrain-recipe", "smoke_pretrain", "--rows", "T5-1",
           "--seeds", "0", "--experiment", "term", "--workers-per-trial", "1", "--cpus-per-worker", "1",
           "--num-cpus", "2", "train.max_steps=24", "train.eval_every=24", "train.checkpoint_every=2",
           "train.num_threads=1"]
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    log1 = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=script_env(), stdout=log1, stderr=subprocess.STDOUT,
                            start_new_session=True)
    running = []
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None and not running:
            time.sleep(1)
            if not (tmp_path / "ray_results" / "t4p_sweeps" / "term-ablation.json").exists():
                continue  # the driver writes it after creating the store
            runs = mlflow_runs(uri, "term")
            running = [r for r in runs if r.data.tags.get("stage") == "finetune" and r.info.status == "RUNNING"]
        assert running, "no trial run became RUNNING:\n" + (tmp_path / "first.log").read_text()[-3000:]
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=120)
    finally:
        _kill_group(proc)
    first_log = (tmp_path / "first.log").read_text()
    assert rc != 0 and "--resume" in first_log, first_log[-3000:]
    assert "Traceback" not in first_log.split("SIGTERM")[0][-2000:]
    runs = mlflow_runs(uri, "term")
    assert {r.info.status for r in runs} <= {"KILLED", "FINISHED"}, [(r.data.tags.get("stage"), r.info.status)
                                                                      for r in runs]
    assert any(r.data.tags.get("stage") == "sweep" and r.info.status == "KILLED" for r in runs)

    second = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=script_env(), capture_output=True, text=True,
                            timeout=900)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    runs = mlflow_runs(uri, "term")
    stages = sorted(r.data.tags.get("stage") for r in runs)
    assert stages == ["finetune", "sweep"], stages  # the same two runs, reopened
    assert all(r.info.status == "FINISHED" for r in runs)
    (trial,) = [r for r in runs if r.data.tags["stage"] == "finetune"]
    assert trial.info.run_id == running[0].info.run_id and trial.data.metrics["final/step"] == 24
