"""`t4p pretrain | finetune | evaluate | predict`.

    t4p pretrain smoke_pretrain train.out_dir=runs/pre
    t4p finetune smoke_semseg finetune.init=runs/pre/checkpoint/checkpoint.pt train.out_dir=runs/ft
    t4p evaluate smoke_semseg runs/ft/checkpoint/checkpoint.pt
    t4p predict runs/ft/checkpoint/checkpoint.pt room.ply --out room_labels.npy

Each handler returns an exit code; metrics are printed and written as JSON into ``train.out_dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from t4p.config import ConfigError, from_json
from t4p.recipes import RECIPES, get_recipe

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add this package's subcommands to the `t4p` parser."""
    recipes = "one of: " + ", ".join(RECIPES)
    for name, helptext, func in (
        ("pretrain", "Text4Point pre-training on 2D-3D pairs", _pretrain),
        ("finetune", "fine-tune (semseg, insseg or det, by the recipe's train.task; optionally from finetune.init)",
         _finetune),
    ):
        p = subparsers.add_parser(name, help=helptext)
        p.add_argument("recipe", help=recipes)
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. optim.lr=0.05")
        p.add_argument("--fresh", action="store_true", help="ignore a checkpoint already in train.out_dir")
        p.set_defaults(func=func)
    p = subparsers.add_parser("evaluate", help="evaluate a checkpoint on finetune.eval_split")
    p.add_argument("recipe", help=recipes)
    p.add_argument("checkpoint", help="a checkpoint file (or its folder) written by t4p finetune")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=_evaluate)
    p = subparsers.add_parser("predict", help="per-point labels for a scene (npy + coloured PLY)")
    p.add_argument("checkpoint", help="a fine-tuning checkpoint")
    p.add_argument("scene", help="points as .ply (ASCII, x y z r g b), .npy or .txt (N x 6, colour 0-255)")
    p.add_argument("--out", required=True, help="output .npy of labels; a coloured .ply is written beside it")
    p.set_defaults(func=_predict)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")


def _train(args: argparse.Namespace, tasks: tuple[str, ...]) -> int:
    from t4p.train.context import RunContext
    from t4p.train.loop import run

    _setup_logging()
    cfg = get_recipe(args.recipe, args.overrides)
    if cfg.train.task not in tasks:
        raise ConfigError(
            f"recipe {args.recipe!r} has train.task={cfg.train.task!r}; `t4p {args.command}` runs {tasks}"
        )
    metrics = run(cfg, RunContext(cfg.train.out_dir, resume=not args.fresh))
    print(json.dumps(metrics, indent=2, sort_keys=True))
    print(f"metrics written to {Path(cfg.train.out_dir) / 'metrics.json'}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    return _train(args, ("pretrain",))


def _finetune(args: argparse.Namespace) -> int:
    return _train(args, ("semseg", "insseg", "det"))


def load_model_from_checkpoint(cfg, checkpoint: str):
    """Build ``cfg``'s model and load a checkpoint's weights into it (frozen CLIP comes from its weights)."""
    from t4p.models.text4point import frozen_tensor_ids
    from t4p.train.checkpoint import load_checkpoint
    from t4p.train.loop import build_model

    model, bundle = build_model(cfg)
    ckpt = load_checkpoint(checkpoint)
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    frozen = frozen_tensor_ids(bundle)
    state = model.state_dict()
    bad = [k for k in missing if state[k].data_ptr() not in frozen] + list(unexpected)
    if bad:
        raise ConfigError(f"{checkpoint}: does not fit the model built from the config ({bad[:5]})")
    return model.eval(), ckpt


def _evaluate(args: argparse.Namespace) -> int:
    from t4p.data.classes import class_list
    from t4p.data.datasets import make_dataset
    from t4p.tasks import get_task
    from t4p.train.loop import pick_device

    _setup_logging()
    cfg = get_recipe(args.recipe, args.overrides)
    task = get_task(cfg.train.task)
    if not task.fine_tuning:
        raise ConfigError(f"recipe {args.recipe!r} has train.task={task.name!r}, which has no evaluation split")
    model, _ = load_model_from_checkpoint(cfg, args.checkpoint)
    device = pick_device(cfg, None)
    model.to(device)
    ds = make_dataset(cfg, cfg.finetune.eval_split, augment=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, collate_fn=ds.collate)
    names = list(class_list(cfg.data.classes).names)
    scores = task.evaluate(model, loader, cfg, device, names)
    out = Path(cfg.train.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {"checkpoint": str(args.checkpoint), "split": cfg.finetune.eval_split, **scores}
    (out / "eval_metrics.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


# --------------------------------------------------------------------------- predict


def read_scene(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) xyz metres and (N, 3) colour 0-255 from .ply (ASCII), .npy or .txt (N x 6)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"scene {path} does not exist")
    if path.suffix == ".ply":
        arr = _read_ascii_ply(path)
    elif path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    else:
        arr = np.loadtxt(path, ndmin=2)
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise ConfigError(f"scene {path}: expected N x 6 (x y z r g b) or N x 3 values, got shape {arr.shape}")
    xyz = arr[:, :3].astype(np.float64)
    rgb = arr[:, 3:6].astype(np.float64) if arr.shape[1] >= 6 else np.full((len(arr), 3), 128.0)
    return xyz, rgb


def _read_ascii_ply(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        header = []
        while True:
            line = f.readline().decode("ascii", errors="replace").strip()
            if not line and f.tell() == 0:
                break
            header.append(line)
            if line == "end_header" or len(header) > 200:
                break
        if "format ascii 1.0" not in header:
            raise ConfigError(f"{path}: only ASCII PLY is read here (header says {header[1:2]}); use .npy")
        props = [h.split()[-1] for h in header if h.startswith("property")]
        data = np.loadtxt(f, ndmin=2)
    cols = [props.index(c) for c in ("x", "y", "z", "red", "green", "blue") if c in props]
    return data[:, cols]


def write_ply(path: str | Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """An ASCII PLY with per-vertex colour."""
    with open(path, "w") as f:
        f.write(
            "ply\nformat ascii 1.0\n"
            f"element vertex {len(xyz)}\n"
            "property float x\nproperty float y\nproperty float z\n"
            "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
        )
        for p, c in zip(xyz, rgb.astype(np.uint8), strict=True):
            f.write(f"{p[0]:.4f} {p[1]:.4f} {p[2]:.4f} {c[0]} {c[1]} {c[2]}\n")


def palette(k: int) -> np.ndarray:
    """(k, 3) distinct colours (HSV wheel)."""
    import colorsys

    return np.array([[int(255 * c) for c in colorsys.hsv_to_rgb(i / max(1, k), 0.75, 0.95)] for i in range(k)])


@torch.no_grad()
def predict_scene(model, cfg, xyz: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Per-point labels: voxelise, run the model, map voxel predictions back to the points."""
    from types import SimpleNamespace

    from t4p.data.augment import color_to_feats
    from t4p.sparse import voxelize

    vox = voxelize(xyz, cfg.data.voxel_size)
    coords = vox.coords - vox.coords.min(axis=0)  # (M, 3) non-negative, as the datasets do
    coords = np.concatenate([np.zeros((len(coords), 1), np.int32), coords.astype(np.int32)], 1)  # (M, 4)
    feats = color_to_feats(np.clip(rgb[vox.voxel2point], 0, 255))  # (M, 3) in [-0.5, 0.5] as in training
    if not cfg.data.use_color:
        feats = np.ones_like(feats)  # as PointsDataset feeds them
    batch = SimpleNamespace(coords=torch.from_numpy(coords), feats=torch.from_numpy(feats).float())
    pred = model(batch).logits.argmax(1).numpy()  # (M,)
    return pred[vox.point2voxel]


def _predict(args: argparse.Namespace) -> int:
    from t4p.data.classes import class_list
    from t4p.train.checkpoint import load_checkpoint

    _setup_logging()
    ckpt = load_checkpoint(args.checkpoint)
    cfg = from_json(ckpt["config"])
    if cfg.train.task != "semseg":
        raise ConfigError(f"{args.checkpoint}: a {cfg.train.task!r} checkpoint; predict needs a semseg one")
    cfg.train.device = "cpu"
    model, _ = load_model_from_checkpoint(cfg, args.checkpoint)
    xyz, rgb = read_scene(args.scene)
    labels = predict_scene(model, cfg, xyz, rgb)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out.with_suffix(".npy"), labels.astype(np.int64))
    names = class_list(cfg.data.classes).names
    write_ply(out.with_suffix(".ply"), xyz, palette(len(names))[labels])
    counts = np.bincount(labels, minlength=len(names))
    print(f"{len(labels)} points -> {out.with_suffix('.npy')} and {out.with_suffix('.ply')}")
    for name, n in zip(names, counts, strict=True):
        if n:
            print(f"  {name}: {n}")
    return 0
