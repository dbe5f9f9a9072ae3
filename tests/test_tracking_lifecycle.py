"""Run lifecycle against a real sqlite MLflow store: concurrent creation of a fresh store, errored trials.

Several processes that open one fresh store at the same moment (the sweep driver and the first
trials of a sweep on a new machine) all create it, migrate it and write to it; the store stays
usable. A trial Tune reports as errored gets its run FAILED by the driver's ``CloseFailedRuns`` at
once. The SIGTERM path of the sweep driver is tested with real Ray in test_sweep_ray.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[1]
OPENERS = 4
READY_TIMEOUT_S = 120.0  # every opener has imported t4p.tracking (MLflow) by then, or something is wrong
OPENER = """
import os, sys, time
from pathlib import Path
from t4p.tracking import Tracker  # imported before the barrier: the processes then open the store together
uri, barrier, i = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
(barrier / f"ready-{i}").touch()
while not (barrier / "go").exists():
    time.sleep(0.001)
t = Tracker(uri, "race")
run = t.open_run("r" + i, {"trial": i})
t.log_metrics(run, {"x": float(i)}, 0)
t.finish(run)
"""


def _wait_until_ready(barrier: Path, procs: list[subprocess.Popen]) -> None:
    """Every opener has written its ready file (bounded; an opener that died fails the test with its stderr)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while len(list(barrier.glob("ready-*"))) < len(procs):
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise AssertionError(f"an opener exited before the barrier:\n{dead[0].communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            ready = sorted(p.name for p in barrier.glob("ready-*"))
            raise AssertionError(f"openers not ready after {READY_TIMEOUT_S:g} s (ready: {ready})")
        time.sleep(0.05)


def test_processes_opening_a_fresh_store_at_once_do_not_corrupt_it(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    (tmp_path / "mlruns").mkdir()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", OPENER, uri, str(barrier), str(i)], env=env, stderr=subprocess.PIPE,
                         text=True)
        for i in range(OPENERS)
    ]
    try:
        _wait_until_ready(barrier, procs)
        (barrier / "go").touch()
        errors = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:  # the processes this test started
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * OPENERS, "\n".join(e[-2000:] for e in errors)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("race")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.metrics["x"] for r in runs) == [float(i) for i in range(OPENERS)]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_an_errored_trial_gets_its_run_failed_at_once(tmp_path):
    """``CloseFailedRuns.on_trial_error``: the errored trial's RUNNING run becomes FAILED; the runs of another
    trial and of another sweep stay RUNNING, and an already finished run of that trial is left as it was."""
    from t4p.sweep.driver import CloseFailedRuns
    from t4p.tracking import Tracker

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    tracker = Tracker(uri, "sweep")
    runs = {
        "errored": tracker.open_run("a", {"sweep_id": "s1", "tune_trial_id": "t_001"}),
        "errored-earlier-attempt": tracker.open_run("a0", {"sweep_id": "s1", "tune_trial_id": "t_001", "try": "0"}),
        "other-trial": tracker.open_run("b", {"sweep_id": "s1", "tune_trial_id": "t_002"}),
        "other-sweep": tracker.open_run("c", {"sweep_id": "s2", "tune_trial_id": "t_001"}),
    }
    tracker.finish(runs["errored-earlier-attempt"], "FINISHED")
    trial = SimpleNamespace(trial_id="t_001")  # what Tune passes: a Trial; the callback reads its trial_id
    CloseFailedRuns(uri, "sweep", "s1").on_trial_error(iteration=3, trials=[trial], trial=trial)
    client = MlflowClient(uri)  # the store read back directly, not through the Tracker
    status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {"errored": "FAILED", "errored-earlier-attempt": "FINISHED", "other-trial": "RUNNING",
                      "other-sweep": "RUNNING"}
