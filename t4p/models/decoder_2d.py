"""g2D: the 2D decoder over frozen CLIP dense features, with a depth head (App. C).

``Decoder2D(in_dim, out_channels)``: (B, d, h, w) -> z2d (B, C, H, W), depth (B, 1, H, W) > 0.
Bilinear upsampling plus convolutions (the paper gives no more detail): a 1x1 projection to
``mid_channels`` (default 128, not stated by the paper), bilinear to a quarter of the output
size, a 3x3 conv block, the 1x1 output convolutions, then bilinear to the full (H, W). The final
1x1 convolutions run before the last upsampling: both are linear per channel, so this equals
convolving at full resolution and costs 16x less.

Upsampling is stride-true, like every pairing of pixels with CLIP cells in training
(``t4p.losses.pixel_cell_index``): cell (i, j) covers pixels [stride i, stride (i + 1)), so the grid is
upsampled onto the ``(h * stride, w * stride)`` pixels it covers (cell centres land on pixel
``stride i + stride / 2``) and the bottom/right remainder that the encoder's flooring pools drop (rows
224..239 of a 240-row image on a 7-row grid) repeats the last cell's edge. Stretching the grid over the
whole image instead would shift the bottom cells by up to half a cell at 240x320.

``depth_loss(pred, target, kind)``: Eigen et al.'s scale-invariant log loss (lambda 0.85, per
image, no square root) or L1 in metres; both only where the target depth is valid (> 0).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

SILOG_LAMBDA = 0.85  # as in BTS/AdaBins; Eigen et al. used 0.5 (not stated by Text4Point)


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class Decoder2D(nn.Module):
    """(B, d, h, w) -> (z2d (B, C, H, W), depth (B, 1, H, W) metres, positive)."""

    def __init__(self, in_dim: int, out_channels: int, out_size: tuple[int, int] | None = None,
                 mid_channels: int = 128, stride: int = 32) -> None:
        super().__init__()
        self.out_size = out_size
        self.stride = stride  # of the image encoder: pixels per cell side
        self.proj = _conv_bn_relu(in_dim, mid_channels, 1)
        self.refine = _conv_bn_relu(mid_channels, mid_channels, 3)
        self.feat_out = nn.Conv2d(mid_channels, out_channels, 1)
        self.depth_head = nn.Sequential(_conv_bn_relu(mid_channels, mid_channels // 4, 3),
                                        nn.Conv2d(mid_channels // 4, 1, 1))

    def forward(self, x: torch.Tensor, out_size: tuple[int, int] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[2], x.shape[3]
        covered = (h * self.stride, w * self.stride)  # the pixels the grid's cells cover
        size = out_size or self.out_size or covered
        pad_h, pad_w = size[0] - covered[0], size[1] - covered[1]
        if pad_h < 0 or pad_w < 0:
            raise ValueError(f"Decoder2D: a {h}x{w} grid at stride {self.stride} covers {covered[0]}x{covered[1]} "
                             f"pixels, more than the {size[0]}x{size[1]} output asked for")
        quarter = (max(1, covered[0] // 4), max(1, covered[1] // 4))
        y = self.proj(x.float())  # (B, mid, h, w)
        y = F.interpolate(y, size=quarter, mode="bilinear", align_corners=False)  # (B, mid, h*s/4, w*s/4)
        y = self.refine(y)
        z = self.feat_out(y)  # (B, C, h*s/4, w*s/4)
        depth = F.softplus(self.depth_head(y))  # (B, 1, h*s/4, w*s/4), > 0
        return self._to_pixels(z, covered, pad_h, pad_w), self._to_pixels(depth, covered, pad_h, pad_w)

    @staticmethod
    def _to_pixels(y: torch.Tensor, covered: tuple[int, int], pad_h: int, pad_w: int) -> torch.Tensor:
        """(B, C, h', w') -> (B, C, H, W): bilinear onto the covered pixels, then the remainder repeats the edge."""
        y = F.interpolate(y, size=covered, mode="bilinear", align_corners=False)  # (B, C, h*s, w*s)
        if pad_h or pad_w:
            y = F.pad(y, (0, pad_w, 0, pad_h), mode="replicate")  # (B, C, H, W)
        return y


def depth_loss(pred: torch.Tensor, target: torch.Tensor, kind: Literal["silog", "l1"] = "silog",
               lam: float = SILOG_LAMBDA, eps: float = 1e-6) -> torch.Tensor:
    """pred, target (B, 1, H, W) metres; pixels with target <= 0 are ignored. Returns a scalar.

    silog (Eigen et al. 2014): per image D = mean(g^2) - lam * mean(g)^2 with g = log pred - log target
    over valid pixels, averaged over images that have any valid pixel. l1: mean |pred - target|.
    """
    if pred.shape != target.shape:
        raise ValueError(f"depth_loss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    valid = target > 0  # (B, 1, H, W)
    if not bool(valid.any()):
        return pred.sum() * 0.0  # keeps the graph, contributes nothing
    if kind == "l1":
        return (pred[valid] - target[valid]).abs().mean()
    if kind != "silog":
        raise ValueError(f"loss.depth_kind={kind!r}: expected 'silog' or 'l1'")
    g = torch.where(valid, torch.log(pred.clamp_min(eps)) - torch.log(target.clamp_min(eps)), 0.0)
    n = valid.flatten(1).sum(1)  # (B,)
    has = n > 0
    mean_g = g.flatten(1).sum(1)[has] / n[has]  # (B',)
    mean_g2 = (g * g).flatten(1).sum(1)[has] / n[has]
    return (mean_g2 - lam * mean_g**2).mean()
