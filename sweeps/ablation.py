"""Run an ablation grid (rows x seeds; default the paper's Tables 5/6 + App. C, or --grid FILE) as one Ray Tune
experiment.

Each trial is a Ray Train DDP fit of the plain training loop; the distinct pre-trainings the
rows need run first (and are reused across sweeps); every run lands in MLflow; the sweep ends
with a paper-style report.

examples:
    python sweeps/ablation.py --rows T5-1,T5-5 --seeds 0,1         # local Ray
    ray job submit -- python sweeps/ablation.py                    # on a running cluster
    python sweeps/ablation.py --dry-run                            # the plan and an estimate
    python sweeps/ablation.py --dry-run --seeds-from t4p-pilot     # + the seeds a finished pilot sweep says you need
    python sweeps/ablation.py --resume                             # continue an interrupted sweep
    python sweeps/ablation.py --benchmark insseg                        # the grid on S3DIS instance segmentation
    python sweeps/ablation.py --benchmark det-sunrgbd                   # ... on VoteNet detection (or det-scannet)
    python sweeps/ablation.py --demo                               # tiny synthetic grid (make demo)
    python sweeps/ablation.py --grid sweeps/grids/example.yaml     # your own grid of rows (README: Your own grid)
    python sweeps/ablation.py --config config.json --seeds 3,4     # replay a logged config (MLflow artifact)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from t4p.errors import UserError, run_command
from t4p.sweep.benchmarks import benchmark
from t4p.sweep.cli import add_common_args, build_configs, mlflow_ui_hint, setup_logging
from t4p.sweep.plan import check_rows, sweep_grid

# The demo: all 7 rows x 2 seeds on synthetic scenes with the tiny random CLIP, one DDP worker per trial so
# two trials run side by side on 2 cores. How long each benchmark's demo trains is its own
# (``Benchmark.demo_overrides``, applied after these): the semseg demo is sized to learn.
DEMO_FINETUNE = [
    "sweep.experiment=t4p-demo",
    "sweep.seeds=0,1",
    "sweep.workers_per_trial=1",
    "sweep.cpus_per_worker=1",
    "sweep.max_concurrent=2",
    "train.max_steps=8",
    "train.eval_every=8",
    "train.checkpoint_every=8",
    "train.num_threads=1",
]
DEMO_PRETRAIN = ["train.max_steps=6", "train.eval_every=6", "train.checkpoint_every=6", "train.num_threads=1"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, pretrain_recipe="pretrain_scannet")
    parser.add_argument("--demo", action="store_true",
                        help="the benchmark's smoke recipe + smoke_pretrain, all rows, seeds 0,1, local Ray, sqlite "
                        "MLflow")
    parser.add_argument("--seeds-from", metavar="EXPERIMENT", default=None,
                        help="with --dry-run: from the newest finished ablation sweep of EXPERIMENT (a pilot), the "
                        "seeds that would resolve the paper's deltas at its observed spread (reads MLflow, creates "
                        "nothing)")
    return parser


def plan_seeds(experiment: str, cfg) -> str:
    """``--seeds-from``: the seeds plan from a pilot sweep; a missing store or experiment is a UserError (exit 2)."""
    from t4p.sweep.report import seeds_plan  # imports MLflow: after --help
    from t4p.tracking import Tracker, resolve_uri

    return seeds_plan(Tracker.existing(resolve_uri(cfg, create=False), experiment))


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    if args.seeds_from and not args.dry_run:
        raise UserError("--seeds-from plans seeds for a --dry-run: add --dry-run")
    extra = []
    if args.demo:
        spec = benchmark(args.benchmark or "semseg")
        args.recipe, args.pretrain_recipe = spec.demo_recipe, "smoke_pretrain"
        args.overrides = [*[f"pretrain.{o}" for o in DEMO_PRETRAIN], *args.overrides]
        extra = [*DEMO_FINETUNE, *spec.demo_overrides]
    ft, pt = build_configs(args, extra)  # a ConfigError names the key: one line, exit code 2 (run_command)
    check_rows(ft.sweep.rows, sweep_grid(ft))  # a bad grid file or row: one line naming it, before Ray starts
    assert pt is not None  # build_configs gives a pre-training config whenever --pretrain-recipe exists (here)
    seeds = plan_seeds(args.seeds_from, ft) if args.seeds_from else ""  # before the plan: a bad name fails fast

    from t4p.sweep.driver import run_ablation, summary_json  # imports Ray: after --help

    if args.demo:
        print("DEMO: synthetic scenes and a tiny CLIP with RANDOM weights: the numbers are not "
              "comparable to the paper's.", flush=True)
    summary = run_ablation(ft, pt, step_time_s=args.step_time, num_cpus=args.num_cpus)
    if summary.get("dry_run"):
        if seeds:
            print(seeds, flush=True)
        return 0
    print(summary_json(summary), flush=True)
    if summary.get("report"):
        print(f"report: {summary['report']}")
    if summary.get("tracking_uri"):
        print(mlflow_ui_hint(summary["tracking_uri"]))
    return 0 if summary["completed"] else 3


def main(argv: list[str] | None = None) -> int:
    """A user mistake is one line ``ablation.py: error: ...`` and exit code 2 (``--debug``: its traceback)."""
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
