"""Two Ray nodes on loopback, a node killed mid-sweep: the sweep completes, nothing is lost or duplicated.

The cluster (``LoopbackCluster``): a head on 127.0.0.2 and a second node on 127.0.0.3, each a separate
``ray start --block`` process group with ``--num-cpus=1`` and its own short temp dir (Ray's Unix
sockets live under it: paths must stay under ~107 characters). Ray rewrites 127.0.0.1 to the host's
address but keeps 127.0.0.2/3, so the two nodes really have two addresses. Token authentication
is on (``RAY_AUTH_MODE=token`` with a random ``RAY_AUTH_TOKEN`` of this test, so ``~/.ray`` is not
touched). The head carries the custom ``TRAIN_DRIVER`` resource, so the Tune trial functions (and
the Ray Train controllers, which run beside them) stay on the head, and the job driver runs there
too (Ray Jobs' default): killing the second node takes one DDP worker of the running trial.

The sweep: ``ray job submit -- <venv python> sweeps/ablation.py`` with the smoke recipe, row T5-1
(no pre-training needed), seed 0: one trial, a 2-worker DDP run with 1 CPU per worker, so its
workers are necessarily one per node. One trial only: it takes both CPUs of the cluster, so more
trials would only queue behind it (~40 s each here) without exercising anything new; the restarted
worker group runs its rank 1 on the restarted node, so the rejoined node is used. When the trial
has reported its first checkpoint (step 2), the second node's processes are SIGKILLed; once the
GCS has marked the node dead (health checks every 1 s, 3 misses: a ``--system-config`` of this
test's head), the node is started again. Ray Train's ``FailureConfig`` restarts the worker group
from the last checkpoint once the node is back.

The reference: the same trial submitted again to the same (now undisturbed) cluster. It is the
same deterministic CPU recipe: the data order and every random draw depend on (seed, step, rank)
only, and a 2-rank gloo all-reduce sums in the same order wherever the ranks run, so the final
metrics must agree within 1e-6. Reusing the running cluster is cheaper than a second Ray start.

MLflow across the two nodes: both "nodes" share this filesystem, so one absolute ``sqlite:///`` URI
works here (only rank 0 and the trial functions write, with retries on 'database is locked'); on
a real cluster the workers log to an ``mlflow server`` over HTTP instead (cluster/README.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from _ray_helpers import free_port, kill_tree, pids_mentioning, start_group, wait_for_port
from mlflow import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
HEAD_IP, NODE_IP = "127.0.0.2", "127.0.0.3"
# 16 steps of ~0.5 s: the node kill, sent once MLflow shows the first checkpoint (step 2), must land while the
# trial still runs (with 6 steps the trial sometimes finished first and nothing was resumed)
TRIAL = ["train.max_steps=16", "train.checkpoint_every=2", "train.eval_every=16", "train.num_threads=1",
         "model.sparse_backend=torch", "sweep.max_failures=3"]


def _short_tmp() -> Path:
    """Ray's temp dirs: short, or the Unix socket paths under them exceed the kernel's limit."""
    base = tempfile.gettempdir() if len(tempfile.gettempdir()) <= 20 else "/tmp"
    return Path(tempfile.mkdtemp(prefix="t4pmn", dir=base))


class LoopbackCluster:
    """A Ray head and one worker node on loopback addresses, as separate process groups."""

    def __init__(self, root: Path, logs: Path):
        self.root, self.logs = root, logs
        self.token = uuid.uuid4().hex
        self.port, self.dash = free_port(), free_port()
        self.procs: list[subprocess.Popen] = []
        self.node: subprocess.Popen | None = None
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH", "MLFLOW_TRACKING_URI")}
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, PYTHONUNBUFFERED="1",
                        RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.2")

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        cmd = [RAY, "start", "--block", "--disable-usage-stats", *args]
        proc = start_group(cmd, self.logs / f"{name}.log", env=self.env)
        self.procs.append(proc)
        return proc

    def start_head(self) -> None:
        self._start("head", [
            "--head", f"--node-ip-address={HEAD_IP}", f"--port={self.port}", "--num-cpus=1",
            '--resources={"TRAIN_DRIVER": 4}', f"--temp-dir={self.root / 'h'}", "--include-dashboard=true",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dash}",
            f"--dashboard-agent-listen-port={free_port()}",
            '--system-config={"health_check_period_ms": 1000, "health_check_failure_threshold": 3}',
        ])
        wait_for_port("127.0.0.1", self.dash, 120)

    def start_node(self, tag: str) -> None:
        self.node = self._start(f"node-{tag}", [
            f"--address={HEAD_IP}:{self.port}", f"--node-ip-address={NODE_IP}", "--num-cpus=1",
            f"--temp-dir={self.root / ('w' + tag)}", f"--dashboard-agent-listen-port={free_port()}",
        ])

    def kill_node(self) -> None:
        kill_tree(self.node.pid)
        self.node.wait()

    def alive_nodes(self) -> list[str]:
        """IP addresses of the nodes the GCS considers alive (the dashboard's state API, with the token)."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.dash}/api/v0/nodes?limit=100",
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                rows = json.loads(r.read())["data"]["result"]["result"]
        except Exception:  # noqa: BLE001 - dashboard still starting
            return []
        return sorted(n["node_ip"] for n in rows if n["state"] == "ALIVE")

    def wait_nodes(self, ips: list[str], timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.alive_nodes() == sorted(ips):
                return
            time.sleep(1)
        raise TimeoutError(f"alive nodes {self.alive_nodes()}, expected {ips} (logs in {self.logs})")

    def submit(self, args: list[str], log: Path) -> subprocess.Popen:
        cmd = [RAY, "job", "submit", f"--address=http://127.0.0.1:{self.dash}", "--",
               sys.executable, str(REPO / "sweeps" / "ablation.py"), *args]
        return start_group(cmd, log, env=self.env)

    def stop(self) -> None:
        for proc in self.procs:
            kill_tree(proc.pid)
            proc.wait()
        for pid in pids_mentioning(str(self.root)):  # daemons that left their group (gcs_server)
            kill_tree(pid)
        shutil.rmtree(self.root, ignore_errors=True)


def _sweep_args(out: Path, experiment: str) -> list[str]:
    return [
        "--recipe", "smoke_semseg", "--pretrain-recipe", "smoke_pretrain", "--rows", "T5-1", "--seeds", "0",
        "--experiment", experiment, "--workers-per-trial", "2", "--cpus-per-worker", "1", "--max-concurrent", "1",
        f"tracking.uri=sqlite:///{out / 'mlflow.db'}", f"sweep.storage_path={out / 'results'}",
        f"sweep.stage_store={out / 'stages'}", f"data.root={out.parent / 'synth'}",
        f"data.prepared_dir={out.parent / 'prepared'}", *TRIAL,
    ]


def _finetune_runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("stage") == "finetune"]


def _checkpointed(uri: str, experiment: str) -> bool:
    """A fine-tuning trial is running and has reported its first checkpoint (step 2)."""
    for run in _finetune_runs(uri, experiment):
        if run.info.status == "RUNNING" and run.data.metrics.get("step", 0) >= 2:
            return True
    return False


def _wait_job(proc: subprocess.Popen, log: Path, timeout: float) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("the job did not finish in time:\n" + log.read_text()[-4000:]) from None
    text = log.read_text()
    assert proc.returncode == 0 and "succeeded" in text, text[-4000:]


def test_sweep_survives_the_loss_of_a_node(tmp_path):
    cluster = LoopbackCluster(_short_tmp(), tmp_path)
    disturbed, reference = tmp_path / "disturbed", tmp_path / "reference"
    uri_d, uri_r = f"sqlite:///{disturbed / 'mlflow.db'}", f"sqlite:///{reference / 'mlflow.db'}"
    for d in (disturbed, reference):
        d.mkdir()
    try:
        cluster.start_head()
        cluster.start_node("1")
        cluster.wait_nodes([HEAD_IP, NODE_IP], 120)

        job_log = tmp_path / "job-disturbed.log"
        job = cluster.submit(_sweep_args(disturbed, "mn"), job_log)
        deadline = time.time() + 300
        while not _checkpointed(uri_d, "mn"):
            assert job.poll() is None, "the sweep ended before the node kill:\n" + job_log.read_text()[-4000:]
            assert time.time() < deadline, "no trial checkpointed in time:\n" + job_log.read_text()[-4000:]
            time.sleep(1)
        time.sleep(0.5)  # the Train controller registers the persisted checkpoint on its next poll (0.2 s)
        cluster.kill_node()
        cluster.wait_nodes([HEAD_IP], 120)  # the GCS noticed the loss
        cluster.start_node("2")
        _wait_job(job, job_log, 600)

        ref_log = tmp_path / "job-reference.log"
        _wait_job(cluster.submit(_sweep_args(reference, "mn"), ref_log), ref_log, 600)
    finally:
        cluster.stop()

    runs, ref_runs = _finetune_runs(uri_d, "mn"), _finetune_runs(uri_r, "mn")
    assert [r.data.tags["trial"] for r in runs] == ["T5-1-s0"]  # exactly once: reopened, not duplicated
    assert all(r.info.status == "FINISHED" for r in runs + ref_runs)
    resumed = runs[0].data.metrics["final/resumed_from_step"]
    assert resumed >= 2, "the trial did not resume from a checkpoint: the kill did not hit it running"
    ref = {r.data.tags["trial"]: r.data.metrics for r in ref_runs}
    for run in runs:
        got, want = run.data.metrics, ref[run.data.tags["trial"]]
        keys = [k for k in want if k.startswith("final/") and k != "final/resumed_from_step"]
        assert "final/loss" in keys and "final/test_miou" in keys
        diff = {k: abs(got[k] - want[k]) for k in keys}
        assert max(diff.values()) <= 1e-6, {k: v for k, v in diff.items() if v > 1e-6}
