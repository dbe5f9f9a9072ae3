"""Models from checkpoints, and the scene files ``t4p predict`` reads (imports torch: the command handlers
import this module after argument parsing). PLY files are read and written by ``t4p.data.ply``."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from t4p.config import Config, ConfigError, task_traits
from t4p.data.datasets import PointsDataset
from t4p.data.ply import read_points
from t4p.models.text4point import frozen_tensor_ids
from t4p.tasks import get_task
from t4p.train.checkpoint import load_checkpoint, restore_model
from t4p.train.loop import build_model


def load_model_from_checkpoint(cfg: Config, checkpoint: str) -> tuple[nn.Module, dict]:
    """Build ``cfg``'s model and load a checkpoint's weights into it (frozen CLIP comes from its weights).

    A checkpoint that does not fit (another architecture) is a ``CheckpointError`` naming the first tensor.
    """
    model, bundle = build_model(cfg, restoring=True)
    ckpt = load_checkpoint(checkpoint, require=("model",))
    restore_model(model, checkpoint, ckpt["model"], frozen_tensor_ids(bundle))
    return model.eval(), ckpt


def read_scene(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) xyz metres and (N, 3) colour 0-255 from .ply (binary or ASCII), .npy or .txt (N x 6).

    A scene without colour (a PLY without red/green/blue, an N x 3 array) is mid-grey (128).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"scene {path} does not exist")
    if path.suffix == ".ply":
        xyz, rgb = read_points(path)  # a bad PLY is a PlyError naming the file
        grey = np.full((len(xyz), 3), 128.0)
        return xyz.astype(np.float64), grey if rgb is None else rgb.astype(np.float64)
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    else:
        arr = np.loadtxt(path, ndmin=2)
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise ConfigError(f"scene {path}: expected N x 6 (x y z r g b) or N x 3 values, got shape {arr.shape}")
    xyz = arr[:, :3].astype(np.float64)
    rgb = arr[:, 3:6].astype(np.float64) if arr.shape[1] >= 6 else np.full((len(arr), 3), 128.0)
    return xyz, rgb


def palette(k: int) -> np.ndarray:
    """(k, 3) distinct colours (HSV wheel)."""
    return np.array([[int(255 * c) for c in colorsys.hsv_to_rgb(i / max(1, k), 0.75, 0.95)] for i in range(k)])


@torch.no_grad()
def predict_scene(model, cfg, xyz: np.ndarray, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """The task's predictions for one raw scene (``Task.predict``), e.g. ``labels`` (N,) per point.

    The scene goes through the dataset's own item code (voxelisation, voxel mean colour, ``data.use_color``),
    unaugmented and with all its points, as evaluation sees a scene.
    """
    ds = PointsDataset(
        [], cfg.data.voxel_size, None, 0, with_boxes=task_traits(cfg).boxes, use_color=cfg.data.use_color
    )
    n = len(xyz)
    arrays = {
        "xyz": xyz.astype(np.float32),
        "rgb": np.clip(rgb, 0, 255).astype(np.uint8),
        "labels": np.full(n, -100, np.int64),
        "instances": np.full(n, -1, np.int64),
        "boxes": np.zeros((0, 8), np.float32),
    }
    batch = ds.collate([ds.item("scene", arrays)])
    return get_task(cfg.train.task).predict(model.eval(), batch, cfg)
