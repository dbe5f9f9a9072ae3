"""MLflow tracking for sweeps: the only module of t4p that imports mlflow.

One parent run per sweep, one child run per trial and per pre-training stage. Runs are
addressed by tags, not by the process that created them: a trial that restarts (Ray Train
worker failure, Tune retry, ``--resume`` of the driver) finds its child run again by the tags
``sweep_id`` + ``trial`` and reopens it, so no run is ever duplicated.

Everything goes through ``MlflowClient`` with an explicit tracking URI (no global active run),
so the driver, the Tune trial processes and rank 0 of each Ray Train worker group can all log
to the same store. The default store is ``mlruns/mlflow.db`` under the directory the user
starts in, turned into an absolute ``sqlite:///`` URI before Ray starts (trials run in other
directories); ``MLFLOW_TRACKING_URI`` or ``tracking.uri`` override it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH

from t4p.config import Config, check_uri_has_no_credentials, to_flat_dict, to_json
from t4p.errors import UserError

log = logging.getLogger(__name__)

SECRET_PATTERN = re.compile(r"key|token|secret|password", re.IGNORECASE)
PACKAGES = ("torch", "open_clip_torch", "ray", "mlflow", "optuna", "numpy", "MinkowskiEngine")
T = TypeVar("T")


# --------------------------------------------------------------------------- store location


def default_uri(cwd: str | os.PathLike | None = None, create: bool = True) -> str:
    """``sqlite:///<abs cwd>/mlruns/mlflow.db`` (the directory is created unless ``create`` is false)."""
    root = Path(cwd or os.getcwd()).resolve() / "mlruns"
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def resolve_uri(cfg: Config | None = None, create: bool = True) -> str:
    """``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else the default sqlite store; always absolute.

    A sqlite store's folder is created unless ``create`` is false (readers: ``Tracker.existing``).
    """
    uri = (cfg.tracking.uri if cfg is not None else "") or os.environ.get("MLFLOW_TRACKING_URI", "")
    check_uri_has_no_credentials("the tracking URI (tracking.uri or $MLFLOW_TRACKING_URI)", uri)
    if not uri:
        return default_uri(create=create)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        # A relative sqlite path would point somewhere else in every Ray session directory.
        path = Path(uri[len("sqlite:///") :]).resolve()
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if "://" not in uri:  # a plain directory (file store)
        return str(Path(uri).resolve())
    return uri


def _local_store(uri: str) -> str:
    """The path of a sqlite database or a folder store (``file://`` or a plain path); "" for a server."""
    if uri.startswith("sqlite:///"):
        return uri[len("sqlite:///") :]
    if uri.startswith("file://"):
        return uri[len("file://") :]
    return uri if "://" not in uri else ""


def artifact_root(uri: str) -> str | None:
    """Artifacts of a sqlite store go beside it (``mlruns/``); servers choose their own."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent.resolve().as_uri()
    return None


def _retry(fn: Callable[[], T], what: str, attempts: int = 8) -> T:
    """sqlite allows one writer at a time: retry 'database is locked' with backoff."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - mlflow wraps sqlalchemy errors in several types
            if "locked" not in str(err).lower() or i == attempts - 1:
                raise
            log.debug("%s: sqlite busy, retry %d", what, i + 1)
            time.sleep(0.2 * 2**i)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock file beside a sqlite store (``mlflow.db.lock``), held while it is opened.

    MLflow creates and migrates a sqlite store on first use without a lock of its own: two processes
    doing it at once fail with "table experiments already exists" and can leave the store half
    migrated. Other stores (servers, databases) migrate on their side: no lock.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri[len("sqlite:///") :])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class TrackingLookupError(UserError, LookupError):
    """A tracking store or experiment that a reader (``sweeps/report.py``) names does not exist."""


class Tracker:
    """A handle on one tracking store and experiment (created on first use; ``Tracker.existing`` creates nothing)."""

    def __init__(self, uri: str, experiment: str):
        self.uri = uri
        with store_lock(uri):  # the first access creates / migrates the store
            self.client = MlflowClient(tracking_uri=uri)
            self.experiment_id = _retry(lambda: self._experiment_id(experiment), "get experiment")

    @classmethod
    def existing(cls, uri: str, experiment: str) -> Tracker:
        """A handle for reading: neither the store nor the experiment is created. A missing one is a
        ``TrackingLookupError`` naming it (and the experiments the store has)."""
        local = _local_store(uri)
        if local and not Path(local).exists():
            raise TrackingLookupError(f"no tracking store at {local} (give --tracking-uri or set "
                                      "MLFLOW_TRACKING_URI; the default is ./mlruns/mlflow.db)")
        self = cls.__new__(cls)
        self.uri = uri
        with store_lock(uri):  # an existing store may still be migrated by MLflow on first access
            self.client = MlflowClient(tracking_uri=uri)
        exp = _retry(lambda: self.client.get_experiment_by_name(experiment), "get experiment")
        if exp is None or exp.lifecycle_stage != "active":
            names = sorted(e.name for e in _retry(self.client.search_experiments, "list experiments"))
            raise TrackingLookupError(f"no experiment {experiment!r} in {uri}"
                                      + (" (it is deleted)" if exp is not None else "")
                                      + f"; experiments there: {', '.join(names) or 'none'}")
        self.experiment_id = exp.experiment_id
        return self

    def _experiment_id(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=_experiment_artifacts(self.uri, name))
        except Exception:  # noqa: BLE001 - another process created it meanwhile
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    # ----------------------------------------------------------------------- runs

    def find_runs(self, **tags: str) -> list:
        """Runs of this experiment whose tags equal ``tags`` (all lifecycle states)."""
        filt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        return _retry(
            lambda: list(self.client.search_runs([self.experiment_id], filter_string=filt, max_results=5000)),
            "search runs",
        )

    def open_run(self, name: str, tags: dict[str, str], parent_run_id: str | None = None) -> str:
        """Reopen the run carrying ``tags`` (must identify it) or create it; returns the run id."""
        existing = self.find_runs(**tags)
        if len(existing) > 1:
            log.warning("%d runs carry tags %s; reopening the oldest", len(existing), tags)
        if existing:
            run = min(existing, key=lambda r: r.info.start_time)
            _retry(lambda: self.client.update_run(run.info.run_id, status="RUNNING"), "reopen run")
            log.info("reopened MLflow run %s (%s)", run.info.run_id, name)
            return run.info.run_id
        all_tags = dict(tags)
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id  # what mlflow.start_run(parent_run_id=) sets
        run = _retry(
            lambda: self.client.create_run(self.experiment_id, tags=all_tags, run_name=name), "create run"
        )
        return run.info.run_id

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        _retry(lambda: self.client.set_terminated(run_id, status=status), "terminate run")

    def status(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.status

    # ----------------------------------------------------------------------- logging

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Params are immutable in MLflow: only those not yet logged are sent (reopened runs)."""
        logged = self.client.get_run(run_id).data.params
        items = [Param(k, v) for k, v in clean_params(params).items() if k not in logged]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            _retry(functools.partial(self.client.log_batch, run_id, params=chunk), "log params")

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        items = [RunTag(k, v) for k, v in clean_tags(tags).items()]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            _retry(functools.partial(self.client.log_batch, run_id, tags=chunk), "set tags")

    def log_metrics(self, run_id: str, metrics: dict[str, Any], step: int) -> None:
        now = int(time.time() * 1000)
        items = [
            Metric(_metric_name(k), float(v), now, int(step))
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        for chunk in _chunks(items, 1000):
            _retry(functools.partial(self.client.log_batch, run_id, metrics=chunk), "log metrics")

    def log_artifact(self, run_id: str, path: str | os.PathLike, subdir: str | None = None) -> None:
        _retry(lambda: self.client.log_artifact(run_id, str(path), subdir), "log artifact")

    def log_text(self, run_id: str, text: str, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(text)
            self.log_artifact(run_id, path)

    def log_config(self, run_id: str, cfg: Config) -> None:
        """Flattened dotted config as params, the resolved config as ``config.json``."""
        self.log_params(run_id, to_flat_dict(cfg))
        self.log_text(run_id, redact(to_json(cfg)), "config.json")


def _experiment_artifacts(uri: str, name: str) -> str | None:
    root = artifact_root(uri)
    return f"{root}/{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}" if root else None


def _chunks(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _metric_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", key)


# --------------------------------------------------------------------------- hygiene


def _secret_values() -> list[str]:
    return [v for k, v in os.environ.items() if SECRET_PATTERN.search(k) and len(v) >= 6]


def redact(text: str) -> str:
    """Replace the value of every secret-looking environment variable found in ``text``."""
    for secret in _secret_values():
        text = text.replace(secret, "<redacted>")
    return text


def _as_text(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def clean_params(params: dict[str, Any]) -> dict[str, str]:
    """Drop secret-named keys (key|token|secret|password: name tags accordingly), stringify tuples,
    redact secret values, truncate to MLflow's limit."""
    out = {}
    for key, value in params.items():
        if SECRET_PATTERN.search(key):
            continue
        out[key] = redact(_as_text(value))[:MAX_PARAM_VAL_LENGTH]
    return out


def clean_tags(tags: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in tags.items():
        if SECRET_PATTERN.search(key) and not key.startswith("mlflow."):
            continue
        out[key] = redact(_as_text(value))[:MAX_TAG_VAL_LENGTH]
    return out


# --------------------------------------------------------------------------- standard tags


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[f"version.{name}"] = "absent"
    return out


def run_tags(cfg: Config, *, stage: str, row: str = "", seed: int | None = None, device: str = "") -> dict:
    """The tags every t4p child run carries (and that the report groups by)."""
    tags = {
        "stage": stage,
        "row": row,
        "seed": "" if seed is None else str(seed),
        "git_commit": git_commit(),
        "backend": cfg.model.sparse_backend,
        "device": device or cfg.train.device,
        "dataset": cfg.data.dataset,
        "task": cfg.train.task,
        "clip_weights": cfg.model.clip.weights,
        "clip_weights_real": str(cfg.model.clip.weights != "random-tiny").lower(),
        "synthetic_data": str(cfg.data.dataset == "synthetic").lower(),
        "host": socket.gethostname(),
    }
    tags.update(package_versions())
    return tags


def dump_json(obj: Any) -> str:
    return redact(json.dumps(obj, indent=2, sort_keys=True, default=str))
