"""What a task is: the interface every ``t4p.tasks`` module implements (docs/architecture.md).

A task (``train.task``: pretrain, semseg, insseg, det) owns what differs between the things t4p trains:
the model it builds, the loss terms it computes on a batch, how it evaluates, and the names of the
metrics it reports. The training loop (``t4p.train.loop``) calls this interface and never branches on
the task's name; ``t4p.tasks.get_task`` picks the object.

Metric names are flat and MLflow-safe (no ``@``): ``miou``, ``map50``, ``ap50/<class>``; the loop
prefixes the evaluated split (``test_map50``), and the same string is the Tune metric, the MLflow
metric and the report's key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from t4p.config import Config


@dataclass(frozen=True)
class Metric:
    label: str  # column heading in reports, e.g. "mAP@0.5"
    key: str  # the flat metric name after "<split>_", e.g. "map50"


class Task(Protocol):
    name: str  # the train.task value
    fine_tuning: bool  # TASK_TRAITS[name].fine_tuning: starts from finetune.init, evaluates on finetune.eval_split
    metrics: tuple[Metric, ...]  # headline metrics; the first is what a search optimises

    def needs_clip(self, cfg: Config) -> bool:
        """Whether the model needs the CLIP bundle (frozen image encoder or text encoder)."""
        ...

    def build_model(self, cfg: Config, bundle: Any, class_names: list[str], restoring: bool = False) -> nn.Module:
        """The model of ``cfg`` (``bundle``: the CLIP bundle or None; ``class_names``: the text prompts' names).

        ``restoring``: every weight and buffer will be loaded from a checkpoint, so nothing is derived from the
        training data (detection's class mean sizes)."""
        ...

    def loss_terms(self, core: nn.Module, batch: Any, out: Any, cfg: Config,
                   gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Named, weighted loss terms of one micro-batch (their sum is the loss); ``gen`` seeds any sampling."""
        ...

    def evaluate(self, core: nn.Module, loader: Any, cfg: Config, device: torch.device,
                 class_names: list[str]) -> dict[str, float]:
        """Flat scores over ``loader`` (all DDP ranks gathered), without the split prefix."""
        ...

    def predict(self, core: nn.Module, batch: Any, cfg: Config) -> dict[str, np.ndarray]:
        """Predictions for the one scene in ``batch`` (eval mode), e.g. ``{"labels": (N,) per original point}``."""
        ...


def flat_scores(scores: dict) -> dict[str, float]:
    """``{"miou": x, "iou": {"wall": y}}`` -> ``{"miou": x, "iou/wall": y}``: one level of per-class families."""
    out: dict[str, float] = {}
    for key, value in scores.items():
        if isinstance(value, dict):
            out.update({f"{key}/{name}": float(v) for name, v in value.items()})
        else:
            out[key] = float(value)
    return out


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()
