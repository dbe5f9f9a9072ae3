"""The sweep driver: Ray start-up, the pre-training phase, the fine-tuning grid, resume, report.

``run_ablation`` is what ``sweeps/ablation.py`` calls:

1. resolve the MLflow URI to an absolute one and open (or on ``--resume`` reopen) the sweep's
   parent run, *before* Ray starts;
2. plan: rows x seeds and the distinct pre-trainings they need (``t4p.sweep.plan``);
3. phase 1: the pre-trainings missing from ``sweep.stage_store``, one Tune trial each
   (a Ray Train fit + an MLflow child run tagged ``stage=pretrain``), committed to the store;
4. phase 2: the fine-tuning grid as one Tune experiment (``grid_search`` over row and seed),
   each trial loading its pre-training by key through ``finetune.init``;
5. the report (Markdown, CSV, PNG) logged to the parent run.

An interrupted sweep (SIGINT, SIGKILL, lost head) is continued with ``--resume``: the sweep id,
its configs and its grid's rows are read back from ``<storage>/t4p_sweeps/<experiment>-<kind>.json``
(one file per experiment and sweep kind, ablation or search, so the two never collide), Tune restores
the grid (finished trials are not rerun), and every MLflow run is reopened rather than duplicated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import ray
import ray.tune
from ray import tune

from t4p.config import Config, ConfigError, from_flat_dict, to_flat_dict
from t4p.data.datasets import open_cache, resolve_schedule
from t4p.errors import UserError
from t4p.io import write_json
from t4p.models.clip import load_clip
from t4p.sweep.plan import Plan, check_rows, describe, plan_ablation, sweep_grid
from t4p.sweep.report import write_report
from t4p.sweep.rows import grid_from_data, grid_to_data
from t4p.sweep.stages import StageStore
from t4p.sweep.trial import SweepContext, finetune_trainable, pretrain_trainable
from t4p.tasks import get_task
from t4p.tracking import Tracker, dump_json, resolve_uri, run_tags

log = logging.getLogger(__name__)

DRIVER_RESOURCE = "TRAIN_DRIVER"  # a custom resource the trial functions use instead of a CPU
RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}  # report latency 1.5 s -> 0.14 s (STACK.md)


# --------------------------------------------------------------------------- Ray


def init_ray(num_cpus: int | None = None) -> None:
    """Connect to the running cluster under ``ray job submit`` / ``RAY_ADDRESS``, else start local Ray.

    Local Ray packs trials onto the cores: each trial function holds one unit of the custom
    ``TRAIN_DRIVER`` resource instead of a CPU, so its workers get the CPUs. The dashboard is on
    (Tune's early-stopped trials otherwise leak their placement groups) and bound to 127.0.0.1.
    """
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    if ray.is_initialized():
        return
    env_vars = {k: os.environ[k] for k in RAY_ENV}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], runtime_env={"env_vars": env_vars})
        return
    ray.init(
        num_cpus=num_cpus or os.cpu_count(),
        resources={DRIVER_RESOURCE: 8},
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        runtime_env={"env_vars": env_vars},
        log_to_driver=True,
    )


def trial_resources() -> dict[str, float]:
    if ray.cluster_resources().get(DRIVER_RESOURCE, 0) > 0:
        return {DRIVER_RESOURCE: 1}
    return {"CPU": 0.1}  # a cluster without the custom resource: a sliver of a CPU per trial function


# --------------------------------------------------------------------------- sweep state


def _abs(path: str, default: str) -> str:
    return str(Path(path or default).resolve())


def resolve_paths(cfg: Config) -> Config:
    """Absolute ``sweep.storage_path`` and ``sweep.stage_store`` (trials run in other directories)."""
    cfg.sweep.storage_path = _abs(cfg.sweep.storage_path, "ray_results")
    cfg.sweep.stage_store = _abs(cfg.sweep.stage_store, "t4p_stages")
    if cfg.sweep.grid:  # recorded as it was found (MLflow params, state file); trials use the saved rows
        cfg.sweep.grid = _abs(cfg.sweep.grid, "")
    return cfg


def share_data_caches(cfg: Config, storage_path: str) -> Config:
    """Synthetic scenes and prepared caches in one place for all trials (both are keyed by settings)."""
    root = Path(storage_path) / "t4p_data"
    if cfg.data.dataset == "synthetic" and not cfg.data.root:
        cfg.data.root = str(root / "synthetic")
    if not cfg.data.prepared_dir:
        cfg.data.prepared_dir = str(root / "prepared")
    return cfg


def warm_data(*cfgs: Config) -> None:
    """Prepare each config's data cache once in the driver (synthetic scenes generated, units whose sources
    changed since an earlier sweep re-prepared): the trials share it and only check it (a trial refuses a
    cache that goes stale while the sweep runs, see ``check_shared_cache``). Pre-flight: a real dataset
    without ``data.root`` fails here, once, not in every trial."""
    for cfg in cfgs:
        if cfg.data.dataset != "synthetic" and not cfg.data.root:
            raise ConfigError(f"data.dataset={cfg.data.dataset!r} needs data.root: the folder of its data, on a "
                              "file system every node of the cluster sees (e.g. /mnt/t4p/data/...)")
        open_cache(cfg)


def check_clip_weights(cfgs: Iterable[Config]) -> None:
    """Pre-flight: load the CLIP weights of every planned fit that needs CLIP, once per setting, from where
    its trials will (on a cluster: the shared file system), so a missing or mismatching file fails the sweep
    here with one clear error instead of failing, and being retried, in every trial."""
    seen: set[tuple[str, str, str]] = set()
    for cfg in cfgs:
        clip = cfg.model.clip
        key = (clip.weights, clip.arch, clip.cache_dir)
        if clip.weights.startswith("random") or key in seen or not get_task(cfg.train.task).needs_clip(cfg):
            continue  # random weights cannot be missing
        seen.add(key)
        log.info("pre-flight: CLIP weights %s (%s)", clip.weights, clip.arch)
        load_clip(clip)


class NoSweepToResume(UserError, FileNotFoundError):
    """``--resume`` found no state file of this experiment and sweep kind."""


def _state_file(cfg: Config, kind: str) -> Path:
    """``<storage>/t4p_sweeps/<experiment>-<kind>.json``: one per experiment and sweep kind (ablation | search)."""
    return Path(cfg.sweep.storage_path) / "t4p_sweeps" / f"{cfg.sweep.experiment}-{kind}.json"


def max_concurrent(cfg: Config, resources: dict[str, float] | None = None) -> int:
    """Tune's ``max_concurrent_trials``: ``sweep.max_concurrent``, or, when it is 0, as many trials as the
    cluster's resources (``ray.cluster_resources()`` when not given) hold: GPUs / gpus_per_trial, else CPUs /
    (workers_per_trial x cpus_per_worker); at least 1. Trials beyond that would only wait inside their fit."""
    s = cfg.sweep
    if s.max_concurrent:
        return s.max_concurrent
    res = ray.cluster_resources() if resources is None else resources
    if s.gpus_per_trial > 0:
        fits = res.get("GPU", 0.0) / s.gpus_per_trial
    else:
        fits = res.get("CPU", 0.0) / (s.workers_per_trial * s.cpus_per_worker)
    n = max(1, int(fits + 1e-9))
    log.info("sweep.max_concurrent=0: %d trials at once (what the cluster's resources hold)", n)
    return n


def concurrency_text(cfg: Config) -> str:
    return f"<= {cfg.sweep.max_concurrent}" if cfg.sweep.max_concurrent else "as many as the cluster's resources allow"


def destinations(cfg: Config, kind: str) -> str:
    """Where a sweep writes (the ``--dry-run`` text): every path must be one that all nodes see."""
    storage = Path(cfg.sweep.storage_path)
    return "\n".join([
        f"trial checkpoints and results (Ray storage): {storage}",
        f"pre-training stages: {cfg.sweep.stage_store}",
        f"sweep state: {_state_file(cfg, kind)}",
        f"reports: {storage / 'reports'}/<sweep id>",
        f"tracking: {cfg.tracking.uri or '$MLFLOW_TRACKING_URI, else sqlite under the current folder'}",
    ])


def _old_state_file(cfg: Config) -> Path:
    """Where every sweep kind of an experiment kept its state before issue 19 (the last one overwrote it)."""
    return Path(cfg.sweep.storage_path) / "t4p_sweeps" / f"{cfg.sweep.experiment}.json"


def save_state(cfg: Config, ctx: SweepContext, kind: str, extra: dict) -> None:
    context = {k: v for k, v in asdict(ctx).items() if k != "loop_fn"}
    write_json(_state_file(cfg, kind), {"context": context, **extra, "kind": kind}, default=list)


def load_state(cfg: Config, kind: str) -> dict:
    """The saved state of the interrupted ``kind`` sweep (ablation | search) of ``cfg.sweep.experiment``.

    A state file of the old name (``<experiment>.json``) is read when it was written by the same kind of sweep.
    """
    path, old = _state_file(cfg, kind), _old_state_file(cfg)
    what = f"--resume: no interrupted {kind} of experiment {cfg.sweep.experiment!r} at {path}"
    if path.is_file():
        return json.loads(path.read_text())
    if old.is_file():
        state = json.loads(old.read_text())
        found = state.get("kind", "ablation")  # the oldest files have no kind: only the ablation resumed then
        if found != kind:
            article = "an" if found[:1] in ("a", "e", "i", "o", "u") else "a"
            raise NoSweepToResume(f"{what} (the state file of the old name {old} belongs to {article} {found})")
        log.info("resuming from the state file of the old name %s (new sweeps write %s)", old, path.name)
        return state
    raise NoSweepToResume(what)


def new_sweep_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def open_parent(tracker: Tracker | None, ctx: SweepContext, cfg: Config, kind: str, extra_tags: dict) -> None:
    if tracker is None:
        return
    ctx.parent_run_id = tracker.open_run(f"{kind}-{ctx.sweep_id}", {"sweep_id": ctx.sweep_id, "stage": "sweep"})
    tags = {**run_tags(cfg, stage="sweep"), "sweep_kind": kind, **extra_tags}
    tracker.set_tags(ctx.parent_run_id, tags)
    tracker.log_config(ctx.parent_run_id, cfg)


class SweepInterrupted(KeyboardInterrupt):
    """SIGTERM (what ``ray job stop`` sends) reached the driver; a KeyboardInterrupt, so Tune stops as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"{signal.Signals(signum).name}: sweep stopped, continue it with --resume")
        self.signum = signum


@contextlib.contextmanager
def stop_cleanly(tracker: Tracker | None, ctx: SweepContext):
    """SIGTERM and Ctrl-C end the sweep with its MLflow runs closed: every open run becomes KILLED.

    The runs are closed inside the signal handler, first: ``ray job stop`` follows SIGTERM with
    SIGKILL a few seconds later, too soon to wait for Tune to wind down. The sweep's state file
    was written before the block; ``--resume`` reopens the runs and continues the grid.
    """

    def close(why: str) -> None:
        log.warning("%s: marking the sweep's open MLflow runs KILLED; continue with --resume", why)
        if tracker is not None:
            assert ctx.parent_run_id is not None  # open_parent set it: tracking is on
            close_children(tracker, ctx)
            tracker.finish(ctx.parent_run_id, "KILLED")

    def on_sigterm(signum: int, frame) -> None:
        signal.signal(signum, previous)  # a second SIGTERM is not handled twice
        close(signal.Signals(signum).name)
        raise SweepInterrupted(signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)  # after ray.init: Ray installs a SIGTERM handler of its own
    try:
        yield
    except SweepInterrupted:
        raise
    except KeyboardInterrupt:  # Ctrl-C outside Tune's own handler
        close("interrupted")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


class CloseFailedRuns(tune.Callback):
    """A trial Tune reports as errored (its process died, its node was lost) gets its MLflow run FAILED now.

    A trial that raises closes its own run; one that is killed cannot, and would stay RUNNING until
    the sweep ends. Runs are found by the ``tune_trial_id`` tag every trial run carries.
    """

    def __init__(self, uri: str, experiment: str, sweep_id: str) -> None:
        self.uri, self.experiment, self.sweep_id = uri, experiment, sweep_id

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        tracker = Tracker(self.uri, self.experiment)
        for run in tracker.find_runs(sweep_id=self.sweep_id, tune_trial_id=trial.trial_id):
            if run.info.status == "RUNNING":
                tracker.finish(run.info.run_id, "FAILED")
                log.warning("trial %s failed: MLflow run %s marked FAILED", trial.trial_id, run.info.run_id)


def close_children(tracker: Tracker, ctx: SweepContext) -> int:
    """Children still RUNNING after the driver's Tune run ended belong to killed trials: mark them."""
    n = 0
    for run in tracker.find_runs(sweep_id=ctx.sweep_id):
        if run.info.status == "RUNNING" and run.info.run_id != ctx.parent_run_id:
            tracker.finish(run.info.run_id, "KILLED")
            n += 1
    return n


# --------------------------------------------------------------------------- Tune runs


def run_tune(trainable, ctx: SweepContext, cfg: Config, name: str, param_space: dict, resume: bool,
             tune_config: tune.TuneConfig | None = None):
    """Run (or restore) one Tune experiment of function trainables that each fit a TorchTrainer."""
    fn = tune.with_resources(tune.with_parameters(trainable, sweep=ctx), trial_resources())
    path = Path(cfg.sweep.storage_path) / name
    if resume and tune.Tuner.can_restore(str(path)):
        log.info("restoring Tune experiment %s", path)
        tuner = tune.Tuner.restore(str(path), trainable=fn, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            fn,
            param_space=param_space,
            tune_config=tune_config or tune.TuneConfig(max_concurrent_trials=max_concurrent(cfg)),
            run_config=tune.RunConfig(
                name=name,
                storage_path=cfg.sweep.storage_path,
                failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures),
                callbacks=[CloseFailedRuns(ctx.tracking_uri, ctx.experiment, ctx.sweep_id)] if ctx.tracking_uri else [],
                verbose=1,
            ),
        )
    return tuner.fit()


def _all_done(results) -> bool:
    return results.num_errors == 0 and results.num_terminated == len(results)


def build_context(ft_cfg: Config, plan: Plan, sweep_id: str, uri: str | None) -> SweepContext:
    return SweepContext(
        sweep_id=sweep_id,
        experiment=ft_cfg.tracking.experiment or ft_cfg.sweep.experiment,
        storage_path=ft_cfg.sweep.storage_path,
        stage_store=ft_cfg.sweep.stage_store,
        finetune_base=to_flat_dict(ft_cfg),
        tracking_uri=uri,
        stages={k: to_flat_dict(s.cfg) for k, s in plan.stages.items()},
        trial_stages={f"{t.row}-s{t.seed}": t.stage for t in plan.trials if t.stage},
        grid=grid_to_data(plan.grid),
    )


def run_ablation(ft_cfg: Config, pt_cfg: Config, *, step_time_s: float = 0.5, num_cpus: int | None = None,
                 report: bool = True, loop_fn=None) -> dict:
    """The ablation sweep (see the module docstring). Returns a summary dict."""
    ft_cfg = resolve_paths(ft_cfg)
    store = StageStore(ft_cfg.sweep.stage_store)
    resume, dry = ft_cfg.sweep.resume, ft_cfg.sweep.dry_run
    if resume:
        state = load_state(ft_cfg, "ablation")
        ft_cfg = from_flat_dict(state["context"]["finetune_base"])
        ft_cfg.sweep.resume, ft_cfg.sweep.dry_run = True, dry  # --resume --dry-run: the saved sweep's plan
        pt_cfg = from_flat_dict(state["pretrain_base"])
    # the rows: the ones a resumed sweep saved (its grid file may have changed since), else sweep.grid's
    grid = grid_from_data(state["context"]["grid"]) if resume and state["context"].get("grid") else sweep_grid(ft_cfg)
    pt_cfg = share_data_caches(pt_cfg, ft_cfg.sweep.storage_path)
    ft_cfg = share_data_caches(ft_cfg, ft_cfg.sweep.storage_path)
    if not dry:
        warm_data(ft_cfg, pt_cfg)
    # epochs -> steps on the prepared training splits, before the plan, the stage keys and the LR schedules
    ft_cfg, pt_cfg = (resolve_schedule(c, prepare=not dry) for c in (ft_cfg, pt_cfg))
    plan = plan_ablation(ft_cfg, pt_cfg, store, grid)
    print(describe(plan, step_time_s), flush=True)
    print(destinations(ft_cfg, "ablation"), flush=True)
    if dry:
        return {"plan": plan, "dry_run": True}
    check_clip_weights([*(t.cfg for t in plan.trials), *(s.cfg for s in plan.stages_to_run)])

    uri = resolve_uri(ft_cfg) if ft_cfg.tracking.enabled else None  # absolute, before Ray starts
    sweep_id = state["context"]["sweep_id"] if resume else new_sweep_id()
    ctx = build_context(ft_cfg, plan, sweep_id, uri)
    ctx.loop_fn = loop_fn
    tracker = Tracker(uri, ctx.experiment) if uri else None
    open_parent(tracker, ctx, ft_cfg, "ablation", {
        "rows": ",".join(check_rows(ft_cfg.sweep.rows, grid)), "seeds": ",".join(map(str, ft_cfg.sweep.seeds)),
        "grid": ft_cfg.sweep.grid or "paper",
        "sweep_benchmark": ft_cfg.sweep.benchmark,
        "stages_needed": len(plan.stages), "stages_reused": len(plan.stages) - len(plan.stages_to_run),
    })
    save_state(ft_cfg, ctx, "ablation", {"pretrain_base": to_flat_dict(pt_cfg)})
    if tracker:
        assert ctx.parent_run_id is not None  # open_parent set it: tracking is on
        tracker.log_text(ctx.parent_run_id, describe(plan, step_time_s), "plan.txt")

    init_ray(num_cpus)
    t0 = time.time()
    with stop_cleanly(tracker, ctx):
        done = True
        if plan.stages_to_run:
            keys = [s.key for s in plan.stages_to_run]
            res = run_tune(pretrain_trainable, ctx, ft_cfg, f"{sweep_id}-pretrain-{uuid.uuid4().hex[:4]}",
                           {"stage": tune.grid_search(keys)}, resume=False)
            done = _all_done(res) and all(store.has(k) for k in keys)
        t_pre = time.time() - t0
        if done:
            space = {"row": tune.grid_search(check_rows(ft_cfg.sweep.rows, grid)),
                     "seed": tune.grid_search(list(ft_cfg.sweep.seeds))}
            res = run_tune(finetune_trainable, ctx, ft_cfg, f"{sweep_id}-finetune", space, resume=resume)
            done = _all_done(res)
    summary = {"sweep_id": sweep_id, "parent_run_id": ctx.parent_run_id, "completed": done,
               "pretrain_s": t_pre, "total_s": time.time() - t0, "plan": plan, "tracking_uri": uri}
    if tracker:
        assert ctx.parent_run_id is not None  # open_parent set it: tracking is on
        killed = close_children(tracker, ctx)
        if killed:
            log.warning("%d trial runs were left RUNNING by killed trials: marked KILLED", killed)
        if done and report:
            summary["report"] = write_report(tracker, ctx.parent_run_id, Path(ft_cfg.sweep.storage_path)
                                             / "reports" / sweep_id, ft_cfg.sweep.benchmark)
        tracker.finish(ctx.parent_run_id, "FINISHED" if done else "KILLED")
    log.info("sweep %s %s", sweep_id, "completed" if done else "interrupted: rerun with --resume")
    return summary


def summary_json(summary: dict) -> str:
    return dump_json({k: v for k, v in summary.items() if k != "plan"})
