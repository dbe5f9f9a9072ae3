"""Optuna search over dotted config keys with ASHA early stopping, and a final test evaluation.

The search metric comes from the validation split carved out of the training data
(``search_trial_config``: ``finetune.eval_split=val`` and, unless ``data.val_areas`` is set,
``data.val_fraction=sweep.val_fraction`` for every search trial; the test area is never seen).
The best config is then retrained on the whole training split and evaluated once on the test
split (``final_test_config``), as its own MLflow child run tagged ``stage=test`` and
``train_split=full``, reported separately from the search.

A space is a dict of dotted key -> Tune domain. On the command line a domain is written
``KEY=log:LO:HI`` (log-uniform), ``KEY=uniform:LO:HI``, ``KEY=int:LO:HI`` or
``KEY=choice:A,B,C``.

A search tunes the recipe as it is, or one row of the grid (``sweep.rows``, at most one): the row's
fine-tuning overrides apply to every trial and, when the row needs pre-training, its pre-training
(keyed and stored as the ablation's: ``t4p.sweep.stages``) runs first unless stored, and every trial and
the final run start from it (``finetune.init``); the plan and the log say which checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optuna.storages import RDBStorage
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from t4p.config import (
    Config,
    ConfigError,
    _leaf_types,
    apply_overrides,
    check_validation_split,
    epochs_resolved,
    from_flat_dict,
    set_value,
    to_flat_dict,
    without_epoch_size,
)
from t4p.data.datasets import resolve_schedule
from t4p.sweep.driver import (
    check_clip_weights,
    close_children,
    concurrency_text,
    destinations,
    init_ray,
    load_state,
    max_concurrent,
    new_sweep_id,
    open_parent,
    resolve_paths,
    run_tune,
    save_state,
    share_data_caches,
    stop_cleanly,
    warm_data,
)
from t4p.sweep.plan import UNCOUNTED_EPOCHS, check_rows, finetune_config, pretrain_config, steps_text, sweep_grid
from t4p.sweep.rows import RowSpec
from t4p.sweep.stages import StageStore, stage_key
from t4p.sweep.trial import SweepContext, finetune_trainable, pretrain_trainable, tracked_fit
from t4p.tracking import Tracker, resolve_uri

log = logging.getLogger(__name__)

DEFAULT_METRIC = "val_miou"  # t4p.train.loop reports <split>_miou


def default_space() -> dict:
    """Fine-tuning lr, weight decay, aux tau, n_ctx, TQM alpha/beta init (the issue's defaults)."""
    return {
        "optim.lr": tune.loguniform(1e-3, 0.3),
        "optim.weight_decay": tune.loguniform(1e-5, 1e-3),
        "loss.aux_tau": tune.uniform(0.03, 0.2),
        "model.n_ctx": tune.choice([4, 8, 16]),
        "model.tqm_alpha_init": tune.uniform(0.5, 1.5),
        "model.tqm_beta_init": tune.uniform(0.0, 1.0),
    }


DOMAIN_FORMS = "KEY=log:LO:HI, uniform:LO:HI, int:LO:HI or choice:A,B"


def parse_domain(item: str):
    """``KEY=log:LO:HI`` etc. -> (key, Tune domain); errors name the item and the expected form."""
    key, _, spec = item.partition("=")
    if key not in _leaf_types():
        raise ConfigError(f"--param {item!r}: unknown config key {key!r}")
    kind, _, rest = spec.partition(":")
    try:
        if kind == "choice":
            values = [v.strip() for v in rest.split(",") if v.strip()]
            probe = Config()
            typed = []
            for v in values:
                set_value(probe, key, v)  # type-check each choice against the config
                typed.append(eval_key(probe, key))
            return key, tune.choice(typed)
        lo, hi = rest.split(":")
        if kind == "log":
            return key, tune.loguniform(float(lo), float(hi))
        if kind == "uniform":
            return key, tune.uniform(float(lo), float(hi))
        if kind == "int":
            return key, tune.randint(int(lo), int(hi) + 1)
    except ValueError as err:  # a bound or choice that is not a number / value of the key
        raise ConfigError(f"--param {item!r}: {err}; expected {DOMAIN_FORMS}") from None
    raise ConfigError(f"--param {item!r}: expected {DOMAIN_FORMS}")


def parse_start(item: str, space: dict) -> dict:
    """``KEY=V,KEY=V`` -> one typed point for Optuna to evaluate first; every key must be searched."""
    point, probe = {}, Config()
    for pair in (p.strip() for p in item.split(",") if p.strip()):
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--start {item!r}: {pair!r} is not KEY=VALUE")
        if key not in space:
            raise ConfigError(f"--start {item!r}: {key!r} is not a searched key (searched: {', '.join(sorted(space))})")
        try:
            set_value(probe, key, value)
        except ValueError as err:
            raise ConfigError(f"--start {item!r}: {err}") from None
        point[key] = eval_key(probe, key)
    missing = sorted(set(space) - set(point))
    if missing:
        raise ConfigError(f"--start {item!r}: give a value for every searched key; missing {', '.join(missing)}")
    return point


def eval_key(cfg: Config, key: str):
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def search_split_overrides(cfg: Config) -> list[str]:
    """What every search trial overrides: validate on ``data.val_areas`` or a ``sweep.val_fraction`` hold-out."""
    if cfg.data.val_areas:
        return ["finetune.eval_split=val"]
    if cfg.sweep.val_fraction <= 0:
        raise ConfigError("sweep.val_fraction=0 and data.val_areas is empty: a search needs a validation split of "
                          "the training data (set sweep.val_fraction, e.g. 0.2, or data.val_areas)")
    return ["finetune.eval_split=val", f"data.val_fraction={cfg.sweep.val_fraction}"]


def search_trial_config(cfg: Config) -> Config:
    """The config a search trial starts from: ``cfg`` validating on its hold-out (epochs re-derived for it)."""
    out = apply_overrides(without_epoch_size(cfg), search_split_overrides(cfg))
    check_validation_split(out)
    return out


def final_test_config(cfg: Config, best: dict) -> Config:
    """The search's final run: ``best`` on the WHOLE training split (no hold-out), evaluated on the test split."""
    out = apply_overrides(without_epoch_size(cfg), ["finetune.eval_split=test", "data.val_fraction=0",
                                                     "data.val_areas="])
    for key, value in best.items():
        set_value(out, key, value)
    return out


def search_row(cfg: Config, grid: Mapping[str, RowSpec] | None = None) -> RowSpec | None:
    """The row a search tunes: ``sweep.rows`` names at most one row of the grid (``sweep.grid``'s by default)."""
    grid = sweep_grid(cfg) if grid is None else grid
    rows = check_rows(cfg.sweep.rows, grid) if cfg.sweep.rows else []
    if len(rows) > 1:
        raise ConfigError(f"sweep.rows={','.join(rows)}: a search tunes one row (e.g. --rows {rows[-1]}); "
                          "run one search per row")
    return grid[rows[0]] if rows else None


def search_seed(cfg: Config, seeds_flag: str | None) -> Config:
    """``--seeds N`` (``seeds_flag``, already parsed into ``sweep.seeds``) is the search's one seed: ``train.seed`` of
    its trials and its final run, and the seed of Optuna's sampler."""
    if seeds_flag is None:
        return cfg
    if len(cfg.sweep.seeds) != 1:
        raise ConfigError(f"--seeds {seeds_flag}: a search runs one seed (its trials' train.seed and the sampler's "
                          "seed); give one integer, or run one search per seed")
    return apply_overrides(cfg, [f"train.seed={cfg.sweep.seeds[0]}"])


def check_pretrain_overrides(cfg: Config, overrides: Sequence[str]) -> None:
    """``pretrain.KEY=VALUE`` items (their keys already checked) apply only to a searched row that is pre-trained."""
    if not overrides:
        return
    first = f"pretrain.{overrides[0]}"
    row = search_row(cfg)
    if row is None:
        raise ConfigError(f"{first}: the search tunes no row, so nothing is pre-trained (give --rows ROW, a row "
                          "of the grid with a pre-training)")
    if not row.needs_pretrain:
        raise ConfigError(f"{first}: row {row.name} trains from scratch, so nothing is pre-trained")


def apply_search_row(cfg: Config, pretrain: Config | None) -> tuple[Config, Config | None]:
    """``cfg`` with the searched row's fine-tuning overrides, and the row's pre-training config (None: the row
    trains from scratch, or there is no row). ``pretrain``: the pre-training recipe's config."""
    grid = sweep_grid(cfg)
    row = search_row(cfg, grid)
    if row is None:
        return cfg, None
    seed = cfg.train.seed
    cfg = finetune_config(cfg, row.name, seed, grid)
    if not row.needs_pretrain:
        return cfg, None
    if cfg.finetune.init:
        raise ConfigError(f"finetune.init={cfg.finetune.init} and row {row.name} (which starts from its own "
                          "pre-training): give one of them")
    if pretrain is None:
        raise ConfigError(f"row {row.name} needs pre-training: give the search a pre-training recipe")
    return cfg, pretrain_config(pretrain, row.name, seed, grid)


def start_text(cfg: Config, key: str | None, stored: bool) -> str:
    """Where a search's trials start (the plan and the log say it)."""
    who = f"row {cfg.sweep.rows[0]}" if cfg.sweep.rows else "the recipe as it is (no row)"
    if key is not None:
        state = "stored: reused" if stored else "not stored: pre-trained first"
        return f"starts from the pre-trained checkpoint of {who}: stage {key} ({state})"
    return f"{who} starts from finetune.init={cfg.finetune.init}" if cfg.finetune.init else f"{who} trains from scratch"


def _study_storage(cfg: Config) -> str:
    path = Path(cfg.sweep.storage_path) / "t4p_sweeps" / f"{cfg.sweep.experiment}-optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def run_search(cfg: Config, space: dict | None = None, *, metric: str = DEFAULT_METRIC, mode: str = "max",
               num_cpus: int | None = None, loop_fn=None, evaluate_test: bool = True,
               step_time_s: float = 0.5, fit_overhead_s: float = 20.0, start_points: Sequence[dict] = (),
               pretrain: Config | None = None) -> dict:
    """Optuna + ASHA over ``space`` (dotted keys); returns best config, metric and the test result.

    ``start_points`` are evaluated first, in order (e.g. the paper's values); Optuna's TPE sampler is
    seeded with ``train.seed`` so that a search is reproducible up to trial completion order.
    ``pretrain``: the pre-training recipe's config, for a searched row that needs pre-training (module docstring).
    """
    cfg = resolve_paths(cfg)
    cfg = share_data_caches(cfg, cfg.sweep.storage_path)
    store = StageStore(cfg.sweep.stage_store)
    space = space or default_space()
    resume, dry = cfg.sweep.resume, cfg.sweep.dry_run
    stage_cfg: Config | None = None  # the row's pre-training (None: the trials start as the config says)
    if resume:
        state = load_state(cfg, "search")
        sweep_id = state["context"]["sweep_id"]
        cfg = from_flat_dict(state["context"]["finetune_base"])
        cfg.sweep.resume, cfg.sweep.dry_run = True, dry
        stage_cfg = next((from_flat_dict(s) for s in state["context"].get("stages", {}).values()), None)
    else:
        sweep_id = new_sweep_id()
        cfg, stage_cfg = apply_search_row(cfg, pretrain)
        if stage_cfg is not None:
            stage_cfg = share_data_caches(stage_cfg, cfg.sweep.storage_path)
    if not dry:
        warm_data(cfg, *([stage_cfg] if stage_cfg else []))  # on --resume too, as the ablation driver does
    if not resume:
        cfg = resolve_schedule(search_trial_config(cfg), prepare=not dry)
        if stage_cfg is not None:  # resolved as the ablation resolves its pre-trainings: the same stage key
            stage_cfg = resolve_schedule(stage_cfg, prepare=not dry)
            cfg.finetune.init = str(store.path(stage_key(stage_cfg, stage_cfg.train.seed)))
    key = None if stage_cfg is None else stage_key(stage_cfg, stage_cfg.train.seed)
    start = start_text(cfg, key, key is not None and store.has(key))
    plan = (f"search {sweep_id}: {cfg.sweep.trials} trials, {concurrency_text(cfg)} at once, metric {metric} "
            f"({mode}) on the val split, ASHA on 'step' (max {steps_text(cfg)}), space: "
            + ", ".join(sorted(space)) + f"\ntrials (seed {cfg.train.seed}): {start}")
    if not epochs_resolved(cfg):
        plan += f"\n{UNCOUNTED_EPOCHS}"
    fits = cfg.sweep.trials + int(evaluate_test) + int(key is not None and not store.has(key))
    hours = (fits * cfg.train.max_steps * step_time_s + fits * fit_overhead_s) / 3600
    per_trial = cfg.sweep.gpus_per_trial or cfg.sweep.workers_per_trial * cfg.sweep.cpus_per_worker
    kind = "GPU" if cfg.sweep.gpus_per_trial > 0 else "CPU"
    plan += (f"\nRay Train fits: at most {fits} (ASHA stops some early); estimate at most {hours:.2f} trial-hours,"
             f" {hours * per_trial:.2f} {kind}-hours (step time {step_time_s:g} s, {fit_overhead_s:g} s per fit)")
    print(plan, flush=True)
    print(destinations(cfg, "search"), flush=True)
    log.info("search trials (seed %d): %s", cfg.train.seed, start)
    if dry:
        return {"dry_run": True, "plan": plan, "start_from": cfg.finetune.init, "config": cfg}
    check_clip_weights([cfg, *([stage_cfg] if stage_cfg is not None and not store.has(key or "") else [])])

    uri = resolve_uri(cfg) if cfg.tracking.enabled else None
    ctx = SweepContext(
        sweep_id=sweep_id, experiment=cfg.tracking.experiment or cfg.sweep.experiment,
        storage_path=cfg.sweep.storage_path, stage_store=cfg.sweep.stage_store,
        finetune_base=to_flat_dict(cfg), tracking_uri=uri,
        fixed_overrides=tuple(search_split_overrides(cfg)), loop_fn=loop_fn,
        stages={key: to_flat_dict(stage_cfg)} if key is not None and stage_cfg is not None else {},
    )
    tracker = Tracker(uri, ctx.experiment) if uri else None
    open_parent(tracker, ctx, cfg, "search", {"metric": metric, "space": ",".join(sorted(space)),
                                               "rows": ",".join(cfg.sweep.rows), "pretrain_stage": key or ""})
    save_state(cfg, ctx, "search", {})

    init_ray(num_cpus)
    with stop_cleanly(tracker, ctx):
        if key is not None and not store.has(key):  # the row's pre-training, as the ablation runs its stages
            log.info("pre-training stage %s first: the search's trials start from it", key)
            res = run_tune(pretrain_trainable, ctx, cfg, f"{sweep_id}-pretrain-{uuid.uuid4().hex[:4]}",
                           {"stage": tune.grid_search([key])}, resume=False)
            if res.num_errors or not store.has(key):
                log.error("pre-training stage %s failed: no search trial started; rerun with --resume", key)
                if tracker:
                    assert ctx.parent_run_id is not None  # open_parent set it: tracking is on
                    close_children(tracker, ctx)
                    tracker.finish(ctx.parent_run_id, "KILLED")
                return {"sweep_id": sweep_id, "parent_run_id": ctx.parent_run_id, "tracking_uri": uri,
                        "completed": False, "pretrain_stage": key}
        return _search(cfg, ctx, tracker, space, start_points, metric, mode, resume, evaluate_test)


def _search(cfg: Config, ctx: SweepContext, tracker: Tracker | None, space: dict, start_points, metric: str,
            mode: str, resume: bool, evaluate_test: bool) -> dict:
    """Optuna + ASHA over ``space`` on the val split, then the best config on the test split."""
    sweep_id = ctx.sweep_id
    searcher = OptunaSearch(metric=metric, mode=mode, study_name=f"t4p-{sweep_id}", seed=cfg.train.seed,
                            points_to_evaluate=list(start_points) or None, storage=RDBStorage(_study_storage(cfg)))
    grace = max(cfg.sweep.asha_grace_steps, cfg.train.eval_every)
    # max_t one past the last step: a trial that reaches the end finishes itself (and its MLflow run)
    # instead of being stopped by ASHA at its final report.
    scheduler = ASHAScheduler(time_attr="step", metric=metric, mode=mode, max_t=cfg.train.max_steps + 1,
                              grace_period=grace, reduction_factor=2)
    tune_config = tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=cfg.sweep.trials,
                                  max_concurrent_trials=max_concurrent(cfg))
    t0 = time.time()
    results = run_tune(finetune_trainable, ctx, cfg, f"{sweep_id}-search", space, resume, tune_config)
    out: dict[str, Any] = {"sweep_id": sweep_id, "parent_run_id": ctx.parent_run_id, "tracking_uri": ctx.tracking_uri,
                           "search_s": time.time() - t0, "trials": len(results)}
    stopped = _mark_early_stopped(tracker, ctx, results, cfg.train.max_steps)
    out["early_stopped"] = stopped
    done = results.num_errors == 0 and results.num_terminated == len(results) == cfg.sweep.trials
    out["completed"] = done
    best = results.get_best_result(metric=metric, mode=mode, scope="all") if len(results) else None
    if best is not None and best.config:
        best_cfg = {k: v for k, v in best.config.items() if "." in k}
        out.update(best_config=best_cfg, best_metric=(best.metrics or {}).get(metric))
        print(f"best config ({metric} = {out['best_metric']}): {json.dumps(best_cfg, sort_keys=True)}", flush=True)
        if tracker:
            assert ctx.parent_run_id is not None  # open_parent set it: tracking is on
            tracker.log_text(ctx.parent_run_id, json.dumps(out["best_config"], indent=2), "best_config.json")
            tracker.set_tags(ctx.parent_run_id, {"best_trial": (best.metrics or {}).get("trial_id", "")})
            tracker.log_metrics(ctx.parent_run_id, {f"best/{metric}": out["best_metric"] or float("nan")}, 0)
        if done and evaluate_test:
            out["test"] = evaluate_best(cfg, best_cfg, ctx)
            if tracker:
                assert ctx.parent_run_id is not None  # open_parent set it: tracking is on
                tracker.log_metrics(ctx.parent_run_id, {f"test/{k}": v for k, v in out["test"].items()}, 0)
    if tracker:
        assert ctx.parent_run_id is not None  # open_parent set it: tracking is on
        close_children(tracker, ctx)
        tracker.finish(ctx.parent_run_id, "FINISHED" if done else "KILLED")
    return out


def _mark_early_stopped(tracker: Tracker | None, ctx: SweepContext, results, max_steps: int) -> int:
    """Trials ASHA stopped (no error, below ``max_steps``): their runs get the last metrics, FINISHED + a tag."""
    stopped = 0
    for res in results:
        metrics = res.metrics or {}
        step = int(metrics.get("step", max_steps))
        if res.error is not None or step >= max_steps:
            continue
        stopped += 1
        trial_id = metrics.get("trial_id", "")
        if tracker is None or not trial_id:
            continue
        for run in tracker.find_runs(sweep_id=ctx.sweep_id, trial=trial_id):
            tracker.set_tags(run.info.run_id, {"early_stopped": "true", "stopped_at_step": str(step)})
            final = {f"final/{k}": float(v) for k, v in metrics.items()
                     if isinstance(v, int | float) and not isinstance(v, bool) and "/" not in k}
            tracker.log_metrics(run.info.run_id, final, step)
            if run.info.status != "FINISHED":  # RUNNING, or FAILED by the stop reaching the fit
                tracker.finish(run.info.run_id, "FINISHED")
    return stopped


def evaluate_best(cfg: Config, best: dict, ctx: SweepContext) -> dict:
    """Retrain the best config on the whole training split, evaluate it on the test split (``stage=test``)."""
    test_cfg = resolve_schedule(final_test_config(cfg, best))
    name = f"{ctx.sweep_id}-best-test"
    set_value(test_cfg, "train.out_dir", str(Path(ctx.storage_path) / "t4p_work" / name))
    log.info("final run: the best config retrained on the whole training split (no validation hold-out), "
             "evaluated once on the test split")
    result, _ = tracked_fit(test_cfg, ctx, name=name, trial="best-test", stage="test",
                            seed=test_cfg.train.seed, extra_tags={"split": "test", "train_split": "full"})
    assert result is not None  # tracked_fit returns no result only with skip_if_finished
    metrics = result.metrics or {}
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
