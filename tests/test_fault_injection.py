"""Worker-kill fault injection (``train.kill_at_step``): the killed run resumes from its checkpoint.

1. Without Ray: the plain loop in a child process SIGKILLs itself at step 5 (checkpoints every 2);
   the next run in the same ``train.out_dir`` resumes at step 4 (``resumed_from_step``) and its
   loss history equals an uninterrupted run's (1e-6).
2. With Ray: one smoke fine-tuning trial of ``sweeps/ablation.py`` (2-worker DDP, Ray Train
   ``FailureConfig``) whose rank-0 worker SIGKILLs itself at step 5: Ray Train restarts the worker
   group from the step-4 checkpoint, not from step 0, and the trial's single MLflow child run
   FINISHED with ``final/resumed_from_step`` = 4. (That the replayed steps equal an undisturbed
   run's is shown by test 1 without Ray and by ``test_multinode`` with Ray: a second sweep here
   would double this test's ~95 s.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _ray_helpers import mlflow_runs, script_env
from _train_helpers import tiny_cfg
from mlflow import MlflowClient

from t4p.config import to_flat_dict
from t4p.train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
STEPS = ("train.max_steps=6", "train.checkpoint_every=2", "train.eval_every=6", "model.sparse_backend=torch")

CHILD = """
import json, sys
from t4p.config import from_flat_dict
from t4p.train.loop import run
cfg = from_flat_dict(json.loads(sys.argv[1]))
print(json.dumps(run(cfg)))
"""


def _run_child(cfg) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", CHILD, json.dumps(to_flat_dict(cfg))], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_kill_at_step_kills_the_process_once_and_the_rerun_resumes(tmp_path):
    data = (f"data.root={tmp_path / 'synth'}", f"data.prepared_dir={tmp_path / 'prepared'}")
    killed_cfg = tiny_cfg("smoke_semseg", tmp_path / "killed", *STEPS, *data, "train.kill_at_step=5")
    first = _run_child(killed_cfg)
    assert first.returncode == -9, first.stderr[-3000:]  # SIGKILL: no cleanup, no metrics.json
    assert not (tmp_path / "killed" / "metrics.json").exists()
    assert load_checkpoint(tmp_path / "killed" / "checkpoint")["step"] == 4
    second = _run_child(killed_cfg)  # same out_dir: resumes from the step-4 checkpoint, is not killed again
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = json.loads(second.stdout.strip().splitlines()[-1])
    assert resumed["resumed_from_step"] == 4 and resumed["step"] == 6
    whole = _run_child(tiny_cfg("smoke_semseg", tmp_path / "whole", *STEPS, *data))
    reference = json.loads(whole.stdout.strip().splitlines()[-1])
    assert reference["resumed_from_step"] == 0
    assert abs(resumed["loss"] - reference["loss"]) <= 1e-6
    a = load_checkpoint(tmp_path / "whole" / "checkpoint")["history"].numpy()
    b = load_checkpoint(tmp_path / "killed" / "checkpoint")["history"].numpy()
    assert a.shape == b.shape == (6,) and abs(a - b).max() <= 1e-6


def _ablation(*extra: str) -> list[str]:
    tiny = [*STEPS, "train.num_threads=1"]
    return [
        sys.executable, str(REPO / "sweeps" / "ablation.py"),
        "--recipe", "smoke_semseg", "--pretrain-recipe", "smoke_pretrain",
        "--rows", "T5-1", "--seeds", "0", "--experiment", "kill",  # T5-1: from scratch, no pre-training
        "--workers-per-trial", "2", "--cpus-per-worker", "0.5", "--max-concurrent", "1", "--num-cpus", "2",
        *tiny, *extra,
    ]


@pytest.mark.slow
@pytest.mark.ray
def test_killed_ray_train_worker_resumes_from_its_checkpoint(tmp_path):
    out = subprocess.run(_ablation("train.kill_at_step=5"), cwd=tmp_path, env=script_env(), capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    runs = mlflow_runs(uri, "kill")
    trials = [r for r in runs if r.data.tags.get("stage") == "finetune"]
    assert len(trials) == 1, [(r.data.tags.get("trial"), r.info.status) for r in trials]  # reopened, not duplicated
    run = trials[0]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["final/resumed_from_step"] == 4  # the last checkpoint before step 5, not 0
    assert run.data.metrics["final/step"] == 6
    history = MlflowClient(uri).get_metric_history(run.info.run_id, "resumed_from_step")
    assert sorted({int(m.value) for m in history}) == [0, 4]  # the first worker group, then the restarted one
    assert "SIGKILLs itself" in out.stdout + out.stderr
    # checkpoints at steps 2, 4 and 6; Ray keeps the newest sweep.checkpoints_to_keep = 2 of them (issue 18)
    fit_dir = tmp_path / "ray_results" / run.data.tags["ray_train_run"]
    kept = sorted(p.name for p in fit_dir.glob("checkpoint_*") if p.is_dir())
    assert len(kept) == 2, kept
    # the run's training log (issue 19), from both worker groups: the killed one and the one that resumed
    log_dir = MlflowClient(uri).download_artifacts(run.info.run_id, "logs", str(tmp_path / "artifacts"))
    text = (Path(log_dir) / "train.log").read_text()
    assert "SIGKILLs itself" in text and "resumed from" in text
