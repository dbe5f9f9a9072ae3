"""The Ray Train worker: runs the plain training loop of ``t4p.train.loop`` under DDP.

``train_worker(config)`` is the function each Ray Train worker executes (Train V2). It rebuilds
the ``Config`` from ``config["cfg"]`` (a flat dotted dict), hands the loop a ``RayTrainContext``
and returns the loop's final metrics. The context:

- ``rank`` / ``world_size`` from ``ray.train.get_context()``; the loop shards its data by them
  (distributed sampler with equal shard sizes, so every rank takes the same number of steps);
- ``prepare_model`` = ``ray.train.torch.prepare_model`` (DDP; gloo on CPU, NCCL on GPU);
- ``report(metrics, checkpoint_dir)``: every rank calls ``ray.train.report`` with the same
  metrics (rank 0 alone would hang the group); rank 0 attaches the checkpoint directory, the
  others ``None``; rank 0 also logs the metrics to the trial's MLflow child run;
- ``resume_dir``: the directory of ``ray.train.get_checkpoint()`` after a worker-group restart.

MLflow is only touched on rank 0 and only through ``t4p.tracking``; the child run itself is
opened (or reopened) by the Tune trial before the fit, so a restarted worker group keeps
logging into the same run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray.train
import ray.train.torch
import torch

from t4p.config import Config, from_flat_dict

log = logging.getLogger(__name__)


class RayTrainContext:
    """``t4p.train`` RunContext backed by ``ray.train`` (see docs/interfaces.md)."""

    shares_data_cache = True  # the driver prepared the sweep's one cache; trials only check it

    def __init__(self, cfg: Config, tracking: dict | None = None):
        context = ray.train.get_context()
        self.cfg = cfg
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.local_rank = context.get_local_rank()
        self.device: torch.device | None = ray.train.torch.get_device()  # RunContextProtocol's type
        self.resume_dir = _checkpoint_dir(ray.train.get_checkpoint())
        self._tracker = None
        self._run_id = None
        self._reports = 0
        if tracking and self.rank == 0:
            from t4p.tracking import Tracker  # heavy (MLflow): only rank 0 logs, the other ranks never import it

            self._tracker = Tracker(tracking["uri"], tracking["experiment"])
            self._run_id = tracking["run_id"]
        if self.resume_dir:
            log.info("rank %d resumes from %s", self.rank, self.resume_dir)

    @contextlib.contextmanager
    def log_file(self, path: Path):
        """Rank 0 of a tracked trial: t4p's log lines also go to ``path`` (appended across worker-group
        restarts), logged as the run's ``logs/train.log`` artifact when the fit ends, however it ends."""
        if self._tracker is None or self._run_id is None:
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        t4p_log = logging.getLogger("t4p")
        t4p_log.addHandler(handler)
        if t4p_log.getEffectiveLevel() > logging.INFO:
            t4p_log.setLevel(logging.INFO)
        try:
            yield
        finally:
            t4p_log.removeHandler(handler)
            handler.close()
            try:
                self._tracker.log_artifact(self._run_id, path, "logs")
            except Exception as err:  # never hide how the fit itself ended
                log.warning("could not log %s to MLflow run %s: %s", path, self._run_id, err)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move to this worker's device and wrap in DDP (a no-op wrap with one worker)."""
        return ray.train.torch.prepare_model(model)

    def prepare_loader(self, loader):
        """The loop shards by ``rank``/``world_size`` itself: the loader is used as built."""
        return loader

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        """Called by every rank with the same metrics; rank 0's checkpoint is persisted by Ray."""
        metrics = dict(metrics)
        step = int(metrics.get("step", self._reports))
        metrics.setdefault("step", step)
        checkpoint = None
        if self.rank == 0 and checkpoint_dir:
            checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir)
        ray.train.report(metrics, checkpoint=checkpoint)  # persists the checkpoint first: MLflow never shows a
        if self._tracker is not None:  # step whose checkpoint a restarted worker group could not resume from
            assert self._run_id is not None  # set together with the tracker
            self._tracker.log_metrics(self._run_id, metrics, step)
        self._reports += 1


def _checkpoint_dir(checkpoint: ray.train.Checkpoint | None) -> str | None:
    if checkpoint is None:
        return None
    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem) and os.path.isdir(checkpoint.path):
        return checkpoint.path
    return checkpoint.to_directory()  # object store: download a local copy


def train_worker(config: dict) -> dict:
    """Ray Train worker entry point: ``config = {"cfg": flat dotted dict, "tracking": dict | None}``.

    ``config["loop_fn"]`` may replace ``t4p.train.loop.run`` (same signature); None = the real loop.
    """
    loop_fn = config.get("loop_fn")
    if loop_fn is None:
        from t4p.train import loop  # heavy (models, data): the driver imports this module, only workers run it

        loop_fn = loop.run
    cfg = from_flat_dict(config["cfg"])
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    ctx = RayTrainContext(cfg, config.get("tracking"))
    with ctx.log_file(Path(cfg.train.out_dir) / "train.log"):
        return loop_fn(cfg, ctx)
