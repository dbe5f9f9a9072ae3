"""Tune function trainables: each trial builds a Ray Train ``TorchTrainer`` and calls ``fit()``.

Train V2 inside Tune (``Tuner(trainer)`` is deprecated): the trial function owns one MLflow
child run (opened or reopened by tags before the fit, finished after it), and the trainer's
``TuneReportCallback`` forwards rank 0's metrics to Tune so ASHA and OptunaSearch see them.
The Train run name is stable per trial, so a retried or resumed trial restores its own
latest checkpoint instead of starting over.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray.train
import ray.tune
from ray.tune.integration.ray_train import TuneReportCallback

if TYPE_CHECKING:  # ray.train(.torch) rebinds these to Train V2's (the default) at import; mypy sees only V1's
    from ray.train.v2.api.callback import UserCallback
    from ray.train.v2.api.config import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.v2.torch.torch_trainer import TorchTrainer
else:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

from t4p.config import Config, apply_overrides, from_flat_dict, set_value, to_flat_dict
from t4p.sweep.plan import finetune_config
from t4p.sweep.rows import ABLATION_ROWS, RowSpec, grid_from_data
from t4p.sweep.stages import StageStore
from t4p.tracking import Tracker, run_tags
from t4p.train.worker import train_worker

log = logging.getLogger(__name__)


@dataclass
class SweepContext:
    """What every trial of one sweep shares (pickled into the trials by ``tune.with_parameters``)."""

    sweep_id: str
    experiment: str
    storage_path: str
    stage_store: str
    finetune_base: dict  # flat dotted config
    tracking_uri: str | None = None  # None = tracking off
    parent_run_id: str | None = None
    stages: dict[str, dict] = field(default_factory=dict)  # key -> flat pre-training config
    fixed_overrides: tuple[str, ...] = ()  # applied to every fine-tuning trial (e.g. eval split)
    trial_stages: dict[str, str] = field(default_factory=dict)  # "<row>-s<seed>" -> stage key
    loop_fn: Any = None  # replaces t4p.train.loop.run in the workers (None = the real loop)
    grid: dict = field(default_factory=dict)  # the sweep's rows (rows.grid_to_data); {} = the paper's

    def base(self) -> Config:
        return from_flat_dict(self.finetune_base)

    def rows(self) -> dict[str, RowSpec]:
        """The grid the sweep was planned from: trials never read the grid file (it may be on the head only)."""
        return grid_from_data(self.grid) if self.grid else ABLATION_ROWS


# --------------------------------------------------------------------------- one fit


def scaling_config(cfg: Config) -> ScalingConfig:
    """``sweep.workers_per_trial`` DDP workers; ``sweep.gpus_per_trial`` split across them."""
    n = cfg.sweep.workers_per_trial
    per_worker: dict[str, float] = {"CPU": cfg.sweep.cpus_per_worker}
    if cfg.sweep.gpus_per_trial > 0:
        per_worker["GPU"] = cfg.sweep.gpus_per_trial / n
    return ScalingConfig(num_workers=n, use_gpu=cfg.sweep.gpus_per_trial > 0, resources_per_worker=per_worker)


def run_config(cfg: Config, name: str, storage_path: str, callbacks: list[UserCallback]) -> RunConfig:
    """Where a fit writes, how often it is retried, and how many checkpoints it keeps (the newest ones)."""
    return RunConfig(
        name=name,
        storage_path=storage_path,
        callbacks=callbacks,
        failure_config=FailureConfig(max_failures=cfg.sweep.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.sweep.checkpoints_to_keep),
    )


def fit(cfg: Config, name: str, ctx: SweepContext, run_id: str | None) -> ray.train.Result:
    """One Ray Train fit of the plain loop; metrics go to Tune (when inside a trial) and MLflow."""
    tracking = None
    if run_id and ctx.tracking_uri:
        tracking = {"uri": ctx.tracking_uri, "experiment": ctx.experiment, "run_id": run_id}
    callbacks: list[UserCallback] = [TuneReportCallback()] if in_tune_trial() else []
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"cfg": to_flat_dict(cfg), "tracking": tracking, "loop_fn": ctx.loop_fn},
        scaling_config=scaling_config(cfg),
        run_config=run_config(cfg, name, ctx.storage_path, callbacks),
    )
    return trainer.fit()


def in_tune_trial() -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # outside Tune, get_trial_id warns and returns None
        return ray.tune.get_context().get_trial_id() is not None


def _final_metrics(result: ray.train.Result) -> dict[str, float]:
    metrics = result.metrics or {}
    return {
        f"final/{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def tracked_fit(
    cfg: Config, ctx: SweepContext, *, name: str, trial: str, stage: str, row: str = "", seed: int | None = None,
    extra_tags: dict[str, Any] | None = None, skip_if_finished: bool = False,
) -> tuple[ray.train.Result | None, str | None]:
    """Open (or reopen) the MLflow child run ``trial`` of this sweep, fit, record the outcome.

    With ``skip_if_finished`` a trial whose run already FINISHED returns ``(None, run_id)`` without
    a fit: after the driver was killed, Tune's saved state may lag behind and restart it.
    """
    tracker = Tracker(ctx.tracking_uri, ctx.experiment) if ctx.tracking_uri else None
    run_id = None
    if tracker is not None and skip_if_finished:
        done = [r for r in tracker.find_runs(sweep_id=ctx.sweep_id, trial=trial) if r.info.status == "FINISHED"]
        if done:
            log.info("trial %s already finished (MLflow run %s): not rerun", trial, done[0].info.run_id)
            return None, done[0].info.run_id
    if tracker is not None:
        run_id = tracker.open_run(name, {"sweep_id": ctx.sweep_id, "trial": trial}, ctx.parent_run_id)
        tune_trial = {"tune_trial_id": ray.tune.get_context().get_trial_id() or ""}  # for CloseFailedRuns
        tracker.set_tags(run_id, {**run_tags(cfg, stage=stage, row=row, seed=seed), **tune_trial, **(extra_tags or {})})
        tracker.log_config(run_id, cfg)
    try:
        result = fit(cfg, name, ctx, run_id)
    except BaseException as err:
        if tracker is not None and run_id is not None:  # run_id is set whenever there is a tracker
            stopped = isinstance(err, (KeyboardInterrupt, SystemExit))  # a signal: Ctrl-C, ray job stop
            tracker.finish(run_id, "KILLED" if stopped else "FAILED")
        raise
    if tracker is not None and run_id is not None:
        final = _final_metrics(result)
        step = int(final.get("final/step", 0))
        tracker.log_metrics(run_id, final, step)
        ckpt = result.checkpoint.path if result.checkpoint else ""
        tracker.set_tags(run_id, {"checkpoint_uri": ckpt, "ray_train_run": name})
        tracker.finish(run_id, "FINISHED")
    return result, run_id


def _trial_dir(ctx: SweepContext, name: str) -> str:
    return str(Path(ctx.storage_path) / "t4p_work" / name)


# --------------------------------------------------------------------------- trainables


def pretrain_trainable(config: dict, sweep: SweepContext) -> None:
    """One pre-training stage: claim its lock, fit, commit the checkpoint to the stage store."""
    key = config["stage"]
    store = StageStore(sweep.stage_store)
    lock = store.claim(key)
    if lock is None:
        log.info("stage %s already stored: reused", key)
        return
    try:
        cfg = from_flat_dict(sweep.stages[key])
        name = f"pretrain-{key}"
        set_value(cfg, "train.out_dir", _trial_dir(sweep, name))
        result, run_id = tracked_fit(
            cfg, sweep, name=name, trial=name, stage="pretrain", seed=cfg.train.seed,
            extra_tags={"stage_hash": key},
        )
        assert result is not None  # tracked_fit returns no result only with skip_if_finished
        if result.checkpoint is None:
            raise RuntimeError(f"pre-training {key} reported no checkpoint; cannot store the stage")
        with result.checkpoint.as_directory() as ckpt_dir:
            store.commit(key, ckpt_dir, {"seed": cfg.train.seed, "mlflow_run_id": run_id,
                                         "config": to_flat_dict(cfg)})
    finally:
        lock.release()


def stage_init_path(store: StageStore, key: str) -> str:
    """What ``finetune.init`` points at for a stored stage: its directory."""
    if not store.has(key):
        raise FileNotFoundError(f"pre-training stage {key} is not in {store.root}; run its pre-training first")
    return str(store.path(key))


def trial_config(config: dict, sweep: SweepContext) -> tuple[Config, str | None]:
    """The fine-tuning config of one Tune trial: recipe + row + seed + stage + dotted search values."""
    row, seed = config.get("row", ""), int(config.get("seed", sweep.base().train.seed))
    cfg = (finetune_config(sweep.base(), row, seed, sweep.rows()) if row
           else apply_overrides(sweep.base(), [f"train.seed={seed}"]))
    stage = config.get("stage_key") or sweep.trial_stages.get(f"{row}-s{seed}")
    if stage:
        set_value(cfg, "finetune.init", stage_init_path(StageStore(sweep.stage_store), stage))
    for key, value in config.items():
        if "." in key:  # a search-space value addressed by its dotted key
            set_value(cfg, key, value)
    cfg = apply_overrides(cfg, list(sweep.fixed_overrides))
    return cfg, stage


def finetune_trainable(config: dict, sweep: SweepContext) -> None:
    """One fine-tuning trial (an ablation row x seed, or an Optuna sample)."""
    cfg, stage = trial_config(config, sweep)
    row = config.get("row", "")
    trial = f"{row}-s{cfg.train.seed}" if row else ray.tune.get_context().get_trial_id()
    name = f"{sweep.sweep_id}-{trial}"
    set_value(cfg, "train.out_dir", _trial_dir(sweep, name))
    tags = {"stage_hash": stage or ""}
    if row:  # the row id of t4p.paper whose numbers the report shows beside this row ("" = none)
        tags["paper_row"] = sweep.rows()[row].paper or ""
    if stage:
        tags["pretrain_run_id"] = StageStore(sweep.stage_store).info(stage).get("mlflow_run_id") or ""
    tracked_fit(cfg, sweep, name=name, trial=trial, stage="finetune", row=row, seed=cfg.train.seed,
                extra_tags=tags, skip_if_finished=True)
