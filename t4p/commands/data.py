"""``t4p data``: ``synth``, ``prepare`` and ``inspect`` (handlers return an exit code).

Bad data raises a ``t4p.errors.UserError`` (its message names the file and line / frame / row), which
``t4p.cli`` prints as one ``t4p: error:`` message with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging

from t4p.commands import examples
from t4p.data.formats import FORMATS

EXAMPLES = {
    "synth": ("t4p data synth data/synth --scenes 6 --seed 0     # scannet/, s3dis/, scannet_votenet/, sunrgbd/",),
    "prepare": ("t4p data prepare s3dis-raw data/synth/s3dis prepared/s3dis --workers 2",
                "t4p data prepare scannet-rgbd my_scans prepared/my_scans --frame-skip 10 --on-bad skip"),
    "inspect": ("t4p data inspect data/synth/s3dis --format s3dis-raw",
                "t4p data inspect my_scans/scans/kitchen_00 --format scannet-rgbd --frame-skip 1"),
}


def _synth(args: argparse.Namespace) -> int:
    from t4p.data.synthetic import SynthSettings, generate_atomic

    s = SynthSettings(args.scenes, args.seed, args.frames, args.height, args.width, args.density)
    root = generate_atomic(args.out, s)
    print(json.dumps({"root": str(root), "scenes": args.scenes, "seed": args.seed}))
    return 0


def _settings(args: argparse.Namespace, **sizes):
    from t4p.data.prepare import PrepareSettings

    return PrepareSettings(
        frame_skip=args.frame_skip, label_version=args.label_version, classes=args.classes, on_bad=args.on_bad, **sizes
    )


def _prepare(args: argparse.Namespace) -> int:
    from t4p.data.prepare import prepare

    s = _settings(args, image_height=args.height, image_width=args.width, voxel_size=args.voxel_size,
                  corr_depth_tol=args.depth_tol)  # fmt: skip
    executor = None
    if args.ray:
        from t4p.sweep.prepare_ray import run_ray_tasks  # Ray only when asked for

        executor = run_ray_tasks
    m = prepare(args.format, args.src, args.out, s, workers=args.workers, executor=executor, force=args.force)
    print(json.dumps({"out": args.out, "units": len(m["units"]), **m["totals"]}))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from t4p.data.summary import inspect_source

    print(json.dumps(inspect_source(args.path, args.format, _settings(args))))
    return 0


def _with_logging(handler):
    def run(args: argparse.Namespace) -> int:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return handler(args)

    return run


def register(subparsers) -> None:
    """Add ``t4p data ...`` to the `t4p` parser."""
    p = subparsers.add_parser("data", help="generate, prepare and inspect data",
                              **examples(*(line for lines in EXAMPLES.values() for line in lines)))
    sub = p.add_subparsers(dest="data_cmd", required=True)

    text = "write procedural rooms in every supported layout"
    s = sub.add_parser("synth", help=text, description=text, **examples(*EXAMPLES["synth"]))
    s.add_argument("out")
    s.add_argument("--scenes", type=int, default=6)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--frames", type=int, default=8, help="RGB-D frames per scene")
    s.add_argument("--height", type=int, default=240)
    s.add_argument("--width", type=int, default=320)
    s.add_argument("--density", type=float, default=300.0, help="surface points per m^2")
    s.set_defaults(func=_with_logging(_synth))

    text = "prepare a raw source into a cache (npz + manifest)"
    pr = sub.add_parser("prepare", help=text, description=text, **examples(*EXAMPLES["prepare"]))
    pr.add_argument("format", choices=list(FORMATS))
    pr.add_argument("src")
    pr.add_argument("out")
    pr.add_argument("--workers", type=int, default=1)
    pr.add_argument("--ray", action="store_true", help="run units as Ray tasks (cluster-wide)")
    pr.add_argument("--force", action="store_true", help="prepare every unit again (default: only new or changed)")
    _common(pr)
    pr.add_argument("--height", type=int, default=240)
    pr.add_argument("--width", type=int, default=320)
    pr.add_argument("--voxel-size", type=float, default=0.025)
    pr.add_argument("--depth-tol", type=float, default=0.02)
    pr.set_defaults(func=_with_logging(_prepare))

    text = "print one JSON summary of a source"
    ins = sub.add_parser("inspect", help=text, description=text, **examples(*EXAMPLES["inspect"]))
    ins.add_argument("path")
    ins.add_argument("--format", required=True, choices=list(FORMATS))
    _common(ins)
    ins.set_defaults(func=_with_logging(_inspect))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frame-skip", type=int, default=25)
    p.add_argument("--label-version", choices=("v1", "v2"), default="v1")
    p.add_argument("--classes", default="s3dis13", help="class list of labelled rooms (t4p.data.classes)")
    p.add_argument("--on-bad", choices=("error", "skip"), default="error",
                   help="a bad unit: error (default; after caching the good ones, list every bad one) or skip it")
