"""Typed batches handed from the datasets to the models (see docs/interfaces.md)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch


def _move(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, list):
        return [_move(o, device) for o in obj]
    return obj


class _ToDevice:
    def to(self: Any, device):  # Any: the subclasses are dataclasses
        """A copy with every tensor (also inside lists) on ``device``."""
        return dataclasses.replace(
            self, **{f.name: _move(getattr(self, f.name), device) for f in dataclasses.fields(self)}
        )


@dataclass
class PretrainBatch(_ToDevice):
    coords: torch.Tensor  # (M, 4) int32: frame index in the batch, voxel i j k (>= 0 per frame)
    feats: torch.Tensor  # (M, 3) float32 colour in [-0.5, 0.5]
    images: torch.Tensor  # (B, 3, H, W) float32, CLIP mean/std normalised
    depth: torch.Tensor  # (B, 1, H, W) float32 metres, 0 = invalid
    pair_voxel: torch.Tensor  # (P,) int64 row into coords
    pair_pixel: torch.Tensor  # (P,) int64 v * W + u in the frame's H x W image
    pair_frame: torch.Tensor  # (P,) int64 frame index in the batch
    frame_ids: list[str]


@dataclass
class SegBatch(_ToDevice):
    coords: torch.Tensor  # (M, 4) int32: sample index, voxel i j k
    feats: torch.Tensor  # (M, 3) float32 colour in [-0.5, 0.5]
    labels: torch.Tensor  # (M,) int64 voxel label mode (ignore = -100)
    point2voxel: torch.Tensor  # (Np,) int64 row of each original point's voxel in this batch
    point_labels: torch.Tensor  # (Np,) int64
    point_instances: torch.Tensor  # (Np,) int64, -1 = none
    point_xyz: torch.Tensor  # (Np, 3) float32 (after augmentation)
    scene_ids: list[str]


@dataclass
class DetBatch(SegBatch):
    boxes: list[torch.Tensor] = dataclasses.field(
        default_factory=list
    )  # (K_i, 8) centre, size, heading, class
