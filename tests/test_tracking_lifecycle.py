"""Run lifecycle against a real sqlite MLflow store: concurrent creation of a fresh store.

Several processes that open one fresh store at the same moment (the sweep driver and the first
trials of a sweep on a new machine) all create it, migrate it and write to it; the store stays
usable. The SIGTERM path of the sweep driver is tested with real Ray in test_sweep_ray.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[1]
OPENER = """
import os, sys, time
go = sys.argv[2]
while not os.path.exists(go):  # start together
    time.sleep(0.001)
from t4p.tracking import Tracker
t = Tracker(sys.argv[1], "race")
run = t.open_run("r" + sys.argv[3], {"trial": sys.argv[3]})
t.log_metrics(run, {"x": float(sys.argv[3])}, 0)
t.finish(run)
"""


def test_processes_opening_a_fresh_store_at_once_do_not_corrupt_it(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    (tmp_path / "mlruns").mkdir()
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", OPENER, uri, str(go), str(i)], env=env, stderr=subprocess.PIPE,
                         text=True)
        for i in range(4)
    ]
    time.sleep(8)  # every process has imported mlflow and waits
    go.touch()
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], "\n".join(e[-2000:] for e in errors)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("race")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.metrics["x"] for r in runs) == [0.0, 1.0, 2.0, 3.0]
    assert all(r.info.status == "FINISHED" for r in runs)
