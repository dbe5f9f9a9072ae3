"""Command-line pieces shared by ``sweeps/ablation.py`` and ``sweeps/search.py``.

Every flag is a shorthand for a ``sweep.*`` (or ``tracking.*``) config key; positional
``KEY=VALUE`` arguments override any key of the fine-tuning config, and ``pretrain.KEY=VALUE``
any key of the pre-training config. The scripts run through ``t4p.errors.run_command``: a user
mistake (``UserError``: a config value, an unknown row, an unparsable ``--param``) is one line
``<script>: error: <message>`` and exit code 2; ``--debug`` (or ``T4P_DEBUG=1``) shows its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
from collections.abc import Sequence

from t4p.config import Config, ConfigError, to_flat_dict
from t4p.errors import add_debug_flag, command_path
from t4p.recipes import get_config, get_recipe
from t4p.sweep.benchmarks import BENCHMARKS, benchmark, check_benchmark
from t4p.sweep.rows import ABLATION_ROWS

# flag -> (config key, help)
SWEEP_FLAGS = {
    "--benchmark": ("sweep.benchmark",
                    f"what the trials fine-tune and are scored on: {', '.join(BENCHMARKS)} (picks the recipe; "
                    "default semseg; --task is the old name)"),
    "--experiment": ("sweep.experiment", "MLflow experiment and Tune experiment prefix"),
    "--grid": ("sweep.grid", "a grid file of named rows (YAML, see sweeps/grids/; default the paper's Tables 5/6 + "
                             "App. C)"),
    "--rows": ("sweep.rows", f"comma-separated rows of the grid (default all: {','.join(ABLATION_ROWS)}; a search "
                             "tunes one row, from its pre-training when it has one)"),
    "--seeds": ("sweep.seeds", "comma-separated seeds (a search: one, its train.seed)"),
    "--workers-per-trial": ("sweep.workers_per_trial", "DDP workers per trial"),
    "--gpus-per-trial": ("sweep.gpus_per_trial", "GPUs per trial (fractions allowed), split over its workers"),
    "--cpus-per-worker": ("sweep.cpus_per_worker", "CPUs per DDP worker (fractions allowed)"),
    "--max-concurrent": ("sweep.max_concurrent", "trials running at once"),
    "--trials": ("sweep.trials", "number of search trials"),
    "--storage-path": ("sweep.storage_path", "Ray storage (shared storage on a multi-node cluster)"),
    "--stage-store": ("sweep.stage_store", "pre-training checkpoints by hash, reused across sweeps"),
    "--max-failures": ("sweep.max_failures", "retries of a failed worker group / trial"),
    "--tracking-uri": ("tracking.uri", "MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlruns/mlflow.db)"),
}


def add_common_args(parser: argparse.ArgumentParser, pretrain_recipe: str | None) -> None:
    recipes = ", ".join(f"{name}: {spec.recipe}" for name, spec in BENCHMARKS.items())
    parser.add_argument("--recipe", default=None, help=f"fine-tuning recipe (default: the --benchmark's; {recipes})")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="replay a logged fine-tuning config: a config.json (a run folder's, or an MLflow run's "
                             "artifact, e.g. a sweep's parent run) or the run folder; its keys replace the recipe's, "
                             "flags and KEY=VALUE go on top")
    if pretrain_recipe:
        parser.add_argument("--pretrain-recipe", default=pretrain_recipe,
                            help=f"pre-training recipe (default {pretrain_recipe})")
    for flag, (key, text) in SWEEP_FLAGS.items():
        old = ("--task",) if flag == "--benchmark" else ()  # the flag's name before issue 16
        parser.add_argument(flag, *old, default=None, help=f"{text} [{key}]")
    parser.add_argument("--resume", action="store_true", help="continue the last interrupted sweep [sweep.resume]")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and estimate only [sweep.dry_run]")
    parser.add_argument("--step-time", type=float, default=0.5,
                        help="seconds per training step for the --dry-run estimate (measure with bench/)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true")
    add_debug_flag(parser)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="any config key, e.g. optim.lr=0.05; pretrain.KEY=VALUE for the pre-training")


def split_overrides(items: list[str]) -> tuple[list[str], list[str]]:
    ft: list[str] = []
    pt: list[str] = []
    for item in items:
        (pt if item.startswith("pretrain.") else ft).append(item.removeprefix("pretrain."))
    return ft, pt


def flag_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for flag, (key, _text) in SWEEP_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            out.append(f"{key}={value}")
    if args.resume:
        out.append("sweep.resume=true")
    if args.dry_run:
        out.append("sweep.dry_run=true")
    return out


def build_configs(args: argparse.Namespace, extra: Sequence[str] = ()) -> tuple[Config, Config | None]:
    """Fine-tuning config (recipe or --config + extra + flags + overrides) and pre-training config (or None).

    With ``--config`` the recipe is only the base for keys the file lacks (``t4p.recipes.get_config``).
    """
    ft_over, pt_over = split_overrides(args.overrides)
    recipe = args.recipe or benchmark(args.benchmark or "semseg").recipe
    ft = get_config(recipe, getattr(args, "config", None), [*extra, *ft_over, *flag_overrides(args)])
    check_benchmark(ft)
    pt = None
    if getattr(args, "pretrain_recipe", None):
        shared = [f"{k}={_text(v)}" for k, v in to_flat_dict(ft).items() if k.startswith(("sweep.", "tracking."))]
        try:
            pt = get_recipe(args.pretrain_recipe, [*shared, *pt_over])
        except ConfigError as err:  # say which config: "unknown config key 'optim.lrr'" alone points at fine-tuning
            raise ConfigError(f"pre-training config ({args.pretrain_recipe}, pretrain.KEY=VALUE): {err}") from None
    return ft, pt


def mlflow_ui_hint(tracking_uri: str) -> str:
    """The line a sweep ends with: the MLflow UI on its store, runnable as printed (no venv activation needed)."""
    mlflow = command_path("mlflow")
    return f"open the runs: {mlflow} ui --backend-store-uri {shlex.quote(tracking_uri)} --host 127.0.0.1"


def _text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
