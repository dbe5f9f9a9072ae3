"""`t4p pretrain | finetune | evaluate | predict`.

    t4p pretrain smoke_pretrain train.out_dir=runs/pre
    t4p finetune smoke_semseg finetune.init=runs/pre/checkpoint/checkpoint.pt train.out_dir=runs/ft
    t4p finetune --config runs/ft optim.lr=0.05 train.out_dir=runs/ft-lr    # replay runs/ft/config.json
    t4p evaluate smoke_semseg runs/ft/checkpoint/checkpoint.pt
    t4p predict runs/ft/checkpoint/checkpoint.pt room.ply --out room_labels.npy

Each handler returns an exit code; metrics are printed and written as JSON into ``train.out_dir`` (beside
the ``config.json`` the loop writes, which ``--config`` replays). Nothing here imports torch at module
level: the handlers import the heavy modules (the loop, ``t4p.commands.checkpoints``) after argument
parsing, so that ``t4p --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from t4p.commands import add_config_args, add_config_flag, config_from_args, examples, split_names
from t4p.config import TASK_TRAITS, ConfigError, from_json
from t4p.io import save_npy, write_json
from t4p.recipes import RECIPES, get_config

log = logging.getLogger(__name__)

EXAMPLES = {
    "pretrain": ("t4p pretrain smoke_pretrain train.out_dir=runs/pre",
                 "t4p pretrain pretrain_scannet data.root=/data/scannet train.out_dir=runs/pre",
                 "t4p pretrain --config runs/pre train.max_steps=2000     # replay runs/pre/config.json, longer"),
    "finetune": ("t4p finetune smoke_semseg finetune.init=runs/pre/checkpoint/checkpoint.pt train.out_dir=runs/ft",
                 "t4p finetune s3dis_semseg data.root=/data/s3dis optim.lr=0.05",
                 "t4p finetune --config mlflow-artifacts/config.json optim.lr=0.05 train.out_dir=runs/ft-lr"),
    "evaluate": ("t4p evaluate smoke_semseg runs/ft/checkpoint/checkpoint.pt",
                 "t4p evaluate --config runs/ft runs/ft/checkpoint/checkpoint.pt finetune.eval_split=train"),
    "predict": ("t4p predict runs/ft/checkpoint/checkpoint.pt room.ply --out pred/room_labels.npy",
                "t4p predict runs/ft/checkpoint/checkpoint.pt room.npy --out pred/room.npy --ply-format ascii"),
}


def register(subparsers) -> None:
    """Add this package's subcommands to the `t4p` parser."""
    for name, helptext, func in (
        ("pretrain", "Text4Point pre-training on 2D-3D pairs", _pretrain),
        (
            "finetune",
            "fine-tune (semseg, insseg or det, by the recipe's train.task; optionally from finetune.init)",
            _finetune,
        ),
    ):
        p = subparsers.add_parser(name, help=helptext, description=helptext, **examples(*EXAMPLES[name]))
        add_config_args(p)
        p.add_argument(
            "--fresh",
            action="store_true",
            help="start at step 0 over a checkpoint already in train.out_dir (it is overwritten)",
        )
        p.set_defaults(func=func)
    text = "evaluate a checkpoint on finetune.eval_split"
    p = subparsers.add_parser("evaluate", help=text, description=text, **examples(*EXAMPLES["evaluate"]))
    p.add_argument("recipe", nargs="?", default=None, metavar="RECIPE",
                   help=f"one of: {', '.join(RECIPES)} (optional with --config)")
    p.add_argument("checkpoint", nargs="?", default=None, metavar="CHECKPOINT",
                   help="a checkpoint file (or its folder) written by t4p finetune")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. data.root=/data/s3dis")
    add_config_flag(p)
    p.set_defaults(func=_evaluate)
    text = ("a fine-tuned checkpoint's predictions for a scene: per-point labels (npy + coloured PLY); "
            "instance ids (insseg) or boxes (det) beside them")
    p = subparsers.add_parser("predict", help=text, description=text, **examples(*EXAMPLES["predict"]))
    p.add_argument("checkpoint", help="a fine-tuning checkpoint (semseg, insseg or det)")
    p.add_argument("scene", help="points as .ply (binary or ASCII; x y z [red green blue]), .npy or .txt "
                   "(N x 6, colour 0-255)")
    p.add_argument(
        "--out",
        required=True,
        help="output .npy of labels; <out>_<name>.npy (instances, boxes) and a coloured .ply are written beside it",
    )
    p.add_argument("--ply-format", choices=("binary", "ascii"), default="binary",
                   help="encoding of the coloured .ply (default binary little-endian: ~3x smaller and ~50x faster to "
                        "write than ascii)")
    p.set_defaults(func=_predict)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")


def _train(args: argparse.Namespace, tasks: tuple[str, ...]) -> int:
    from t4p.train.context import RunContext  # torch: after argument parsing
    from t4p.train.loop import run

    _setup_logging()
    cfg = config_from_args(args)
    if cfg.train.task not in tasks:
        raise ConfigError(
            f"{_source(args)} has train.task={cfg.train.task!r}; `t4p {args.command}` runs {tasks}"
        )
    ctx = RunContext(cfg.train.out_dir, resume=False) if args.fresh else RunContext.for_config(cfg)
    metrics = run(cfg, ctx)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    print(f"metrics written to {Path(cfg.train.out_dir) / 'metrics.json'}")
    return 0


def _source(args: argparse.Namespace) -> str:
    """Where a command's config came from, for its error messages."""
    parts = [f"recipe {args.recipe!r}"] if args.recipe else []
    return " + ".join([*parts, f"config {args.config}"] if args.config else parts)


def _pretrain(args: argparse.Namespace) -> int:
    return _train(args, ("pretrain",))


def _finetune(args: argparse.Namespace) -> int:
    return _train(args, tuple(name for name, traits in TASK_TRAITS.items() if traits.fine_tuning))


def _evaluate(args: argparse.Namespace) -> int:
    import torch  # after argument parsing, like every heavy import here

    from t4p.commands.checkpoints import load_model_from_checkpoint
    from t4p.data.classes import class_list
    from t4p.data.datasets import PointsDataset, make_dataset
    from t4p.tasks import get_task
    from t4p.train.loop import evaluate, pick_device

    _setup_logging()
    # [RECIPE] CHECKPOINT [KEY=VALUE ...]: argparse cannot tell which of the first two is given without a recipe
    lead, overrides = split_names([x for x in (args.recipe, args.checkpoint, *args.overrides) if x is not None])
    if not lead or len(lead) > 2:
        raise ConfigError("`t4p evaluate` takes [RECIPE] CHECKPOINT [KEY=VALUE ...]; got "
                          + (" ".join(lead) if lead else "no checkpoint"))
    checkpoint = lead[-1]
    args.recipe = lead[0] if len(lead) == 2 else None
    cfg = get_config(args.recipe, args.config, overrides)
    task = get_task(cfg.train.task)
    if not task.fine_tuning:
        raise ConfigError(f"{_source(args)} has train.task={task.name!r}, which has no evaluation split")
    model, _ = load_model_from_checkpoint(cfg, checkpoint)
    device = pick_device(cfg, None)
    model.to(device)
    ds = make_dataset(cfg, cfg.finetune.eval_split, augment=False)
    assert isinstance(ds, PointsDataset)  # a fine-tuning task's split: points (pre-training reads image pairs)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, collate_fn=ds.collate)
    names = list(class_list(cfg.data.classes).names)
    scores = evaluate(task, model, loader, cfg, device, names)  # <split>_<metric>, as training reports them
    out = Path(cfg.train.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {"checkpoint": str(checkpoint), "split": cfg.finetune.eval_split, **scores}
    write_json(out / "eval_metrics.json", result, indent=2)
    print(json.dumps(result, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    import numpy as np  # after argument parsing, like every heavy import here

    from t4p.commands.checkpoints import load_model_from_checkpoint, palette, predict_scene, read_scene
    from t4p.data.classes import class_list
    from t4p.data.ply import write_points
    from t4p.train.checkpoint import load_checkpoint

    _setup_logging()
    ckpt = load_checkpoint(args.checkpoint, require=("model", "config"))
    cfg = from_json(ckpt["config"])
    cfg.train.device = "cpu"
    model, _ = load_model_from_checkpoint(cfg, args.checkpoint)
    xyz, rgb = read_scene(args.scene)
    pred = predict_scene(model, cfg, xyz, rgb)
    out = Path(args.out).with_suffix(".npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for key, value in pred.items():  # labels -> <out>.npy, the others -> <out>_<key>.npy
        path = out if key == "labels" else out.with_name(f"{out.stem}_{key}.npy")
        save_npy(path, value)
        written.append(str(path))
    labels = pred["labels"]
    names = class_list(cfg.data.classes).names
    colours = np.vstack([palette(len(names)), [[90, 90, 90]]])  # label -1 (no box / no class): grey
    write_points(out.with_suffix(".ply"), xyz, colours[labels], binary=args.ply_format == "binary")
    print(f"{len(labels)} points ({cfg.train.task}) -> {', '.join(written)} and {out.with_suffix('.ply')}")
    counts = np.bincount(labels[labels >= 0], minlength=len(names))
    for name, n in zip(names, counts, strict=True):
        if n:
            print(f"  {name}: {n}")
    if "boxes" in pred:
        print(f"  {len(pred['boxes'])} boxes (centre, size, heading, class, score)")
    return 0
