"""The ablation plan: which pre-trainings and fine-tunings a sweep runs (no Ray, no MLflow).

A row of the sweep's grid (``sweep.grid``, default the paper's ``ABLATION_ROWS``) x a seed is one
fine-tuning trial. Rows that need pre-training are keyed by ``stage_key(pre-training config, seed)``;
rows with equal pre-training overrides share a key, so the paper grid (7 rows) needs 3 distinct
pre-trainings per seed, not 5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from t4p.config import Config, ConfigError, apply_overrides, epochs_resolved
from t4p.sweep.rows import ABLATION_ROWS, RowSpec, load_grid
from t4p.sweep.stages import StageStore, stage_key


@dataclass
class PretrainStage:
    key: str
    seed: int
    rows: list[str]
    cfg: Config
    stored: bool


@dataclass
class FinetuneTrial:
    row: str
    seed: int
    stage: str | None  # pre-training key, None = from scratch
    cfg: Config  # finetune.init still empty: filled in from the store when the trial starts


@dataclass
class Plan:
    trials: list[FinetuneTrial]
    stages: dict[str, PretrainStage] = field(default_factory=dict)
    grid: Mapping[str, RowSpec] = field(default_factory=dict)  # the rows it was planned from
    grid_file: str = ""  # sweep.grid ("" = the paper's)

    @property
    def stages_to_run(self) -> list[PretrainStage]:
        return [s for s in self.stages.values() if not s.stored]

    @property
    def fits(self) -> int:
        """Ray Train fits this sweep will start (pre-trainings not stored + fine-tunings)."""
        return len(self.stages_to_run) + len(self.trials)

    def pretrain_steps(self) -> int:
        return sum(s.cfg.train.max_steps for s in self.stages_to_run)

    def finetune_steps(self) -> int:
        return sum(t.cfg.train.max_steps for t in self.trials)

    def steps_saved_by_reuse(self) -> int:
        """Pre-training steps not run: one per row that needs a stage, minus those actually run."""
        needed = sum(s.cfg.train.max_steps * len(s.rows) for s in self.stages.values())
        return needed - self.pretrain_steps()


def sweep_grid(cfg: Config) -> Mapping[str, RowSpec]:
    """The rows of ``cfg.sweep.grid`` (read and checked now), or the paper's when it is empty."""
    return load_grid(cfg.sweep.grid) if cfg.sweep.grid else ABLATION_ROWS


def check_rows(rows: tuple[str, ...] | list[str], grid: Mapping[str, RowSpec] | None = None) -> list[str]:
    """The rows a sweep runs: ``sweep.rows``, or every row of the grid (default the paper's) when it is empty."""
    grid = ABLATION_ROWS if grid is None else grid
    if not rows:
        return list(grid)
    unknown = [r for r in rows if r not in grid]
    if unknown:
        raise ConfigError(f"sweep.rows: unknown row(s) {unknown}; expected some of {', '.join(grid)}")
    return list(rows)


def finetune_config(base: Config, row: str, seed: int, grid: Mapping[str, RowSpec] | None = None) -> Config:
    """The fine-tuning recipe with the row's overrides (``grid``'s, default the paper's) and the seed."""
    return apply_overrides(base, [*(ABLATION_ROWS if grid is None else grid)[row].finetune, f"train.seed={seed}"])


def pretrain_config(base: Config, row: str, seed: int, grid: Mapping[str, RowSpec] | None = None) -> Config:
    spec = (ABLATION_ROWS if grid is None else grid)[row]
    if spec.pretrain is None:
        raise ValueError(f"row {row!r} trains from scratch: it has no pre-training")
    return apply_overrides(base, [*spec.pretrain, f"train.seed={seed}", "train.task=pretrain"])


def plan_ablation(finetune_base: Config, pretrain_base: Config, store: StageStore,
                  grid: Mapping[str, RowSpec] | None = None) -> Plan:
    """Trials for ``finetune_base.sweep.rows`` x ``.seeds`` and the distinct pre-trainings they need.

    ``grid``: the rows to plan from (a resumed sweep passes the ones it saved); default ``sweep.grid``'s.
    """
    grid = sweep_grid(finetune_base) if grid is None else grid
    rows = check_rows(finetune_base.sweep.rows, grid)
    plan = Plan(trials=[], grid=grid, grid_file=finetune_base.sweep.grid)
    for seed in finetune_base.sweep.seeds:
        for row in rows:
            key = None
            if grid[row].needs_pretrain:
                pt_cfg = pretrain_config(pretrain_base, row, seed, grid)
                key = stage_key(pt_cfg, seed)
                if key not in plan.stages:
                    plan.stages[key] = PretrainStage(key, seed, [], pt_cfg, store.has(key))
                plan.stages[key].rows.append(row)
            plan.trials.append(FinetuneTrial(row, seed, key, finetune_config(finetune_base, row, seed, grid)))
    return plan


def estimate_hours(plan: Plan, step_time_s: float, fit_overhead_s: float = 20.0) -> dict[str, float]:
    """Device-hours of the plan: steps x seconds per step + a fixed start-up cost per fit."""
    cfg = plan.trials[0].cfg if plan.trials else None
    workers = cfg.sweep.workers_per_trial if cfg else 1
    gpus = cfg.sweep.gpus_per_trial if cfg else 0.0
    steps = plan.pretrain_steps() + plan.finetune_steps()
    wall_h = (steps * step_time_s + plan.fits * fit_overhead_s) / 3600
    kind = "gpu_hours" if gpus > 0 else "cpu_hours"
    per_trial = gpus if gpus > 0 else workers * (cfg.sweep.cpus_per_worker if cfg else 1.0)
    return {"trial_hours": wall_h, kind: wall_h * per_trial}


UNCOUNTED_EPOCHS = "some lengths are in epochs and the data is not prepared yet: their steps are not counted below"


def steps_text(cfg: Config) -> str:
    """``12345`` steps, or ``180 ep`` while an epoch-based length waits for the prepared data."""
    return str(cfg.train.max_steps) if epochs_resolved(cfg) else f"{cfg.train.epochs} ep"


def describe(plan: Plan, step_time_s: float, fit_overhead_s: float = 20.0) -> str:
    """The ``--dry-run`` text."""
    task = plan.trials[0].cfg.sweep.benchmark if plan.trials else "-"
    grid = plan.grid_file or "the paper's (Tables 5/6 + App. C)"
    lines = [f"grid: {grid} ({len(plan.grid)} rows)", f"fine-tuning trials: {len(plan.trials)} (task {task})"]
    width = max([5, *(len(t.row) for t in plan.trials)])
    for t in plan.trials:
        lines.append(f"  {t.row:{width}s} seed {t.seed}  steps {steps_text(t.cfg):>6s}  pretrain {t.stage or '-'}")
    lines.append(f"distinct pre-trainings: {len(plan.stages)} ({len(plan.stages_to_run)} to run)")
    for s in plan.stages.values():
        state = "stored" if s.stored else "to run"
        lines.append(f"  {s.key} seed {s.seed} rows {','.join(s.rows)} steps {steps_text(s.cfg)}: {state}")
    lines.append(f"Ray Train fits: {plan.fits}")
    lines.append(f"pre-training steps saved by stage reuse: {plan.steps_saved_by_reuse()}")
    if not all(epochs_resolved(c) for c in [*(t.cfg for t in plan.trials), *(s.cfg for s in plan.stages.values())]):
        lines.append(UNCOUNTED_EPOCHS)
    est = estimate_hours(plan, step_time_s, fit_overhead_s)
    lines.append(
        "estimate: " + ", ".join(f"{k} {v:.2f}" for k, v in est.items())
        + f" (step time {step_time_s:g} s, {fit_overhead_s:g} s start-up per fit)"
    )
    return "\n".join(lines)
