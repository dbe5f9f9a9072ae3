"""Task heads on the 3D decoder feature z3D."""

from __future__ import annotations

import torch
from torch import nn


class SegHead(nn.Module):
    """Semantic segmentation: a linear classifier per voxel, ``(M, C) -> (M, K')``."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, z3d: torch.Tensor) -> torch.Tensor:
        return self.classifier(z3d)  # (M, K')
