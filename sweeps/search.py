"""Optuna hyperparameter search (Ray Tune OptunaSearch + ASHA) over dotted config keys.

Each trial is a Ray Train DDP fit evaluated on a validation split of the training data (never
the test area); the best config is then trained and evaluated once on the test split.

examples:
    python sweeps/search.py --trials 16 --max-concurrent 2
    python sweeps/search.py --param optim.lr=log:1e-3:0.3 --param model.n_ctx=choice:4,8,16
    python sweeps/search.py --benchmark insseg               # instance segmentation, optimises val_map50
    python sweeps/search.py --rows T5-5 --seeds 1       # tune one row of the grid (from its pre-training), seed 1
    python sweeps/search.py --resume                   # continue an interrupted search
    ray job submit -- python sweeps/search.py          # on a running cluster
    python sweeps/search.py --config config.json --trials 8   # search around a logged config (MLflow artifact)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from t4p.errors import run_command
from t4p.sweep.benchmarks import benchmark
from t4p.sweep.cli import add_common_args, build_configs, mlflow_ui_hint, setup_logging, split_overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, pretrain_recipe="pretrain_scannet")  # for a --rows row that needs pre-training
    parser.add_argument("--param", action="append", default=[], metavar="KEY=DOMAIN",
                        help="search domain, e.g. optim.lr=log:1e-3:0.3, loss.aux_tau=uniform:0.03:0.2, "
                             "model.n_ctx=choice:4,8,16 (default: lr, weight decay, aux tau, n_ctx, TQM alpha/beta)")
    parser.add_argument("--metric", default=None,
                        help="validation metric to optimise (default: the benchmark's: val_miou, val_map50, val_map50)")
    parser.add_argument("--mode", default="max", choices=["max", "min"])
    parser.add_argument("--start", action="append", default=[], metavar="KEY=V,KEY=V",
                        help="a point to evaluate first (all searched keys), e.g. the paper's values; repeatable")
    parser.add_argument("--no-test", action="store_true", help="skip the final test-split evaluation")
    return parser


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    cfg, pt = build_configs(args)  # a ConfigError names the key: one line, exit code 2 (run_command)
    metric = args.metric or benchmark(cfg.sweep.benchmark).search_metric

    from t4p.sweep.search import (  # imports Ray: after --help
        check_pretrain_overrides,
        default_space,
        parse_domain,
        parse_start,
        run_search,
        search_seed,
    )

    # --rows: at most one row of the grid; --seeds: one integer (train.seed); pretrain.KEY: only for a pre-trained row
    cfg = search_seed(cfg, args.seeds)
    check_pretrain_overrides(cfg, split_overrides(args.overrides)[1])
    # a bad --param / --start is a ConfigError naming the item: nothing is written
    space = dict(parse_domain(p) for p in args.param) if args.param else default_space()
    starts = [parse_start(item, space) for item in args.start]
    out = run_search(cfg, space, metric=metric, mode=args.mode, num_cpus=args.num_cpus,
                     evaluate_test=not args.no_test, step_time_s=args.step_time, start_points=starts, pretrain=pt)
    print(json.dumps({k: v for k, v in out.items() if k != "config"}, indent=2, default=str))
    if out.get("tracking_uri"):
        print(mlflow_ui_hint(out["tracking_uri"]))
    return 0 if out.get("dry_run") or out.get("completed") else 3


def main(argv: list[str] | None = None) -> int:
    """A user mistake is one line ``search.py: error: ...`` and exit code 2 (``--debug``: its traceback)."""
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
