"""Rebuild the paper-style ablation report of a sweep from its MLflow runs (read-only: nothing is created in
the tracking store; an unknown experiment lists the ones there).

examples:
    python sweeps/report.py --experiment t4p-ablation            # the latest ablation sweep
    python sweeps/report.py --experiment t4p-demo --sweep-id ID  # a given sweep
    python sweeps/report.py --experiment t4p-demo --tracking-uri sqlite:///$PWD/mlruns/mlflow.db --out reports/demo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from t4p.errors import UserError, add_debug_flag, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", required=True, help="MLflow experiment name")
    parser.add_argument("--sweep-id", default="", help="sweep id (default: the latest ablation sweep)")
    parser.add_argument("--tracking-uri", default="", help="default $MLFLOW_TRACKING_URI or ./mlruns/mlflow.db")
    parser.add_argument("--benchmark", "--task", default="",
                        help="semseg, insseg, det-sunrgbd, det-scannet (default: the sweep's)")
    parser.add_argument("--out", default="", help="output folder (default reports/<sweep id>)")
    add_debug_flag(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from t4p.config import Config
    from t4p.sweep.report import write_report
    from t4p.tracking import Tracker, resolve_uri

    cfg = Config()
    cfg.tracking.uri = args.tracking_uri
    tracker = Tracker.existing(resolve_uri(cfg, create=False), args.experiment)  # creates nothing
    tags = {"stage": "sweep", "sweep_kind": "ablation"}
    if args.sweep_id:
        tags["sweep_id"] = args.sweep_id
    parents = sorted(tracker.find_runs(**tags), key=lambda r: r.info.start_time)
    if not parents:
        raise UserError(f"no ablation sweep found in experiment {args.experiment!r} ({tracker.uri})"
                        + (f" with --sweep-id {args.sweep_id}" if args.sweep_id else ""))
    parent = parents[-1]
    sweep_id = parent.data.tags.get("sweep_id", parent.info.run_id)
    tags, params = parent.data.tags, parent.data.params
    name = (args.benchmark or tags.get("sweep_benchmark") or params.get("sweep.benchmark")
            or tags.get("sweep_task") or params.get("sweep.task", "semseg"))  # the last two: sweeps before issue 16
    path = write_report(tracker, parent.info.run_id, Path(args.out or Path("reports") / sweep_id), name)
    print(f"report: {path.resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """A user mistake is one line ``report.py: error: ...`` and exit code 2 (``--debug``: its traceback)."""
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
