"""Safe defaults: what listens on the network, and that secrets never reach MLflow.

What these tests found (Ray 2.60.0, MLflow 3.17.2, this Linux box whose node IP is not loopback),
by reading the LISTEN sockets of the processes started, from ``/proc/net/tcp{,6}`` (no psutil):

- ``t4p.sweep.driver.init_ray`` (local Ray, ``RAY_AUTH_MODE`` unset): the dashboard's HTTP server
  listens on 127.0.0.1 only (``dashboard_host="127.0.0.1"``) and answers 401 without a token.
  Ray enables token authentication by default for a new local cluster (``get_authentication_mode()``
  is ``TOKEN``; the token is ``~/.ray/auth_token``, created if missing).
- Ray's internal ports listen on all interfaces (``::``/``0.0.0.0``) or the node IP: the GCS, the
  raylet, every core worker (the driver included) and the dashboard agent (gRPC), the runtime-env
  agent, and the dashboard agent's HTTP port (52365, also on 127.0.0.1). With token auth on, a
  client with a wrong or no token is refused by the GCS (``AuthenticationError: InvalidAuthToken``),
  and every HTTP endpoint among them answers 401/403 without the token.
- Exception, recorded: Ray's Prometheus exporters (the dashboard agent's metrics port, the
  dashboard head's ``DASHBOARD_METRIC_PORT`` 44227, the autoscaler monitor's) bind all interfaces
  whenever the node IP is not loopback and serve ``/metrics`` without authentication: read-only
  counters (no code execution). ``_system_config={"enable_metrics_collection": False}`` removes the
  agent's; the others have no switch. The test classifies them by their Prometheus answer and
  fails on any other endpoint reachable off loopback without the token.
- t4p itself opens no port: the ports above all belong to Ray's processes or the driver's core worker.
- MLflow: the command the README gives (``mlflow ui ... --host 127.0.0.1``) listens on 127.0.0.1
  only, the server and its workers (``mlflow ui --help``: the default host is 127.0.0.1 as well).
- Secrets: a variable named like ``*_TOKEN``/``*_KEY``/``*SECRET*``/``*PASSWORD*`` never appears,
  by name or value, in a run's params, tags or ``config.json`` (``t4p.tracking.clean_params``,
  ``clean_tags``, ``redact``), even when a config value contains it.

The crafted-pickle checkpoint is covered by ``test_train_parts``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _ray_helpers import descendants, free_port, is_loopback, kill_tree, listening_sockets, wait_for_port
from mlflow import MlflowClient

from t4p.recipes import get_recipe
from t4p.tracking import Tracker, run_tags

REPO = Path(__file__).resolve().parents[1]

RAY_CHILD = """
import json, sys, time
from t4p.sweep.driver import init_ray
import ray
from ray._raylet import AuthenticationMode, get_authentication_mode
init_ray(1)
info = ray._private.worker.global_worker.node.address_info
info["auth_token_mode"] = get_authentication_mode() == AuthenticationMode.TOKEN
print("INFO " + json.dumps(info), flush=True)
sys.stdin.read()  # keep Ray up until the test closes stdin
"""


def _clean_env() -> dict:
    """The user's defaults: no Ray address, no auth override."""
    drop = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "MLFLOW_TRACKING_URI")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def _http(url: str, timeout: float = 3.0) -> tuple[int | None, str]:
    """(status, body start) of a GET without credentials; (None, error) when it does not speak HTTP/1."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(400).decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, ""
    except Exception as err:  # noqa: BLE001 - gRPC ports reset or time out: not HTTP
        return None, type(err).__name__


def _classify(host: str, port: int) -> str:
    """How an unauthenticated client fares on a non-loopback port."""
    status, body = _http(f"http://{host}:{port}/")
    if status in (401, 403):
        return "http-token"
    metrics_status, metrics = _http(f"http://{host}:{port}/metrics")
    if metrics_status == 200 and "# TYPE" in metrics:
        return "prometheus-metrics"
    if status is None:
        return "not-http"  # gRPC (Ray's servers check the token in an interceptor)
    return f"open-http-{status}"


@pytest.mark.ray
@pytest.mark.slow
def test_init_ray_dashboard_on_loopback_and_internal_ports_need_the_token(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", RAY_CHILD], cwd=tmp_path, env=_clean_env(), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        info = None
        for line in proc.stdout:
            if line.startswith("INFO "):
                info = json.loads(line[5:])
                break
        assert info is not None, "init_ray did not start Ray"
        assert info["auth_token_mode"], "Ray's token authentication is off in the embedded defaults"
        dash_host, dash_port = info["webui_url"].rsplit(":", 1)
        wait_for_port(dash_host, int(dash_port), 60)
        sockets = listening_sockets(descendants(proc.pid))
        dashboard = [s for s in sockets if s[1] == int(dash_port)]
        assert dashboard and all(s[0] == "127.0.0.1" for s in dashboard), dashboard
        assert _http(f"http://{info['webui_url']}/api/jobs/")[0] == 401  # the dashboard wants the token too

        exposed = {(h, p): cmd for h, p, _, cmd in sockets if not is_loopback(h)}
        node_ip = info["node_ip_address"]
        kinds = {}
        for (host, port), cmd in exposed.items():
            target = node_ip if host in ("::", "0.0.0.0") else host
            kinds[(host, port)] = (_classify(target, port), cmd[:60])
        print("off-loopback Ray sockets:", json.dumps({f"{h}:{p}": v for (h, p), v in kinds.items()}, indent=1))
        open_http = {k: v for k, v in kinds.items() if v[0].startswith("open-http")}
        assert not open_http, f"reachable off loopback without Ray's token: {open_http}"
        gcs = [s for s in exposed if s[1] == int(info["gcs_address"].rsplit(":", 1)[1])]
        assert gcs and kinds[gcs[0]][0] == "not-http"

        wrong = {**_clean_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32}
        probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={info['gcs_address']!r})"],
                               env=wrong, capture_output=True, text=True, timeout=120)
        assert probe.returncode != 0 and "InvalidAuthToken" in probe.stderr, probe.stderr[-2000:]
    finally:
        kill_tree(proc.pid)
        proc.wait()


def _readme_mlflow_command(db: Path, port: int) -> list[str]:
    """The ``mlflow ui`` line of the README, with this test's store and a free port."""
    line = next(ln for ln in (REPO / "README.md").read_text().splitlines() if "mlflow ui --backend-store-uri" in ln)
    line = line.replace("$PWD/mlruns/mlflow.db", str(db))
    line = re.sub(r"--port \d+", f"--port {port}", line)
    args = line.split()
    return [str(REPO / args[0]) if args[0].startswith(".venv") else args[0], *args[1:]]


@pytest.mark.slow
def test_mlflow_ui_as_documented_listens_on_loopback_only(tmp_path):
    port = free_port()
    cmd = _readme_mlflow_command(tmp_path / "mlflow.db", port)
    assert "--host" in cmd and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    env = {**_clean_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with (tmp_path / "mlflow.log").open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for_port("127.0.0.1", port, 120)
        assert _http(f"http://127.0.0.1:{port}/health", timeout=30)[0] == 200
        sockets = listening_sockets(descendants(proc.pid))
        assert any(p == port for _, p, _, _ in sockets), sockets
        assert all(is_loopback(h) for h, _, _, _ in sockets), f"MLflow listens off loopback: {sockets}"
    finally:
        kill_tree(proc.pid)
        proc.wait()


SECRETS = {
    "T4P_TEST_API_TOKEN": "tok-3f9a1c7e55",
    "AWS_SECRET_ACCESS_KEY": "aws-8b2d4e6f00",
    "DB_PASSWORD": "pw-c0ffee1234",
    "MY_SECRET_THING": "sec-99aa88bb77",
    "OPENAI_API_KEY": "key-1234abcd99",
}


def test_env_secrets_never_reach_mlflow_params_or_tags(tmp_path, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    # config values that carry a secret (a path, an experiment name) and tags named like secrets
    cfg = get_recipe("smoke_semseg", [f"data.root={tmp_path}/{SECRETS['DB_PASSWORD']}/data",
                                      f"tracking.experiment=exp-{SECRETS['OPENAI_API_KEY']}"])
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "secrets")
    run_id = tracker.open_run("r", {"trial": "r"})
    tracker.log_config(run_id, cfg)
    tracker.set_tags(run_id, {**run_tags(cfg, stage="finetune"), **{k: v for k, v in os.environ.items()
                                                                      if k in SECRETS},
                              "note": f"token={SECRETS['T4P_TEST_API_TOKEN']}"})
    tracker.finish(run_id)

    run = MlflowClient(tracker.uri).get_run(run_id)
    config_json = Path(MlflowClient(tracker.uri).download_artifacts(run_id, "config.json", str(tmp_path))).read_text()
    logged = [*run.data.params.items(), *run.data.tags.items()]
    assert len(run.data.params) > 50 and "note" in run.data.tags  # the run was logged, only cleaned
    for name, value in SECRETS.items():
        assert not [k for k, _ in logged if k == name], f"{name} logged as a param/tag name"
        leaked = [k for k, v in logged if value in v]
        assert not leaked, f"the value of {name} is in {leaked}"
        assert value not in config_json
    assert "<redacted>" in run.data.params["data.root"]
