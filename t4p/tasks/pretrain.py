"""Pre-training (Sec. 3, App. C): the 3D network against frozen CLIP features of paired RGB-D frames.

Loss: L_e on (CLIP grid cell, stride-16 voxel) pairs lifted with the image encoder's own stride, L_d on
full-resolution (pixel, voxel) pairs (Eq. 14), and the depth loss of App. C when ``loss.depth``.
Pre-training has no evaluation split: its product is the checkpoint that fine-tuning starts from.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from t4p.config import TASK_TRAITS, Config, ConfigError
from t4p.losses import framewise_infonce, lift_pairs, sample_pairs
from t4p.models.decoder_2d import depth_loss
from t4p.models.text4point import Text4PointPretrain
from t4p.sparse import coarse_index
from t4p.tasks.base import Metric


def pretrain_terms(core: Text4PointPretrain, batch, out, cfg: Config, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """L_e (encoder pairs lifted to the CLIP grid), L_d (full-resolution pairs), depth loss (App. C)."""
    lc = cfg.loss
    big_h, big_w = batch.images.shape[2:]
    terms: dict[str, torch.Tensor] = {}
    # L_d: z2D at the pair's pixel vs z3D at the pair's voxel, Eq. 14
    keep = sample_pairs(batch.pair_frame, lc.max_pairs, gen)  # (P',)
    frame, pixel, voxel = batch.pair_frame[keep], batch.pair_pixel[keep], batch.pair_voxel[keep]
    z2d = out.z2d.flatten(2)[frame, :, pixel]  # (P', C)
    terms["loss_d"] = lc.decoder_weight * framewise_infonce(z2d, out.z3d[voxel], frame, lc.tau)
    # L_e: (CLIP grid cell, stride-16 voxel) pairs, duplicates merged, Eq. 14
    h3d = out.out3d.h3d
    grid_h, grid_w = out.h2d.shape[2:]
    coarse = coarse_index(batch.coords, h3d)  # (M,) encoder row of each input voxel
    lifted = lift_pairs(batch.pair_frame, batch.pair_pixel, batch.pair_voxel, (big_h, big_w), (grid_h, grid_w), coarse,
                        stride=core.image_encoder.stride)  # the encoder's own grid and stride
    keep = sample_pairs(lifted.frame, lc.max_pairs, gen)
    f2d = out.h2d.flatten(2)[lifted.frame[keep], :, lifted.cell[keep]]  # (Q, d)
    f3d = out.out3d.h3d_hat[lifted.voxel[keep]]  # (Q, d)
    weights = lifted.count[keep].float() if lc.coarse_pair_weighting else None
    terms["loss_e"] = lc.encoder_weight * framewise_infonce(f2d, f3d, lifted.frame[keep], lc.tau, weights)
    if lc.depth:
        terms["loss_depth"] = lc.depth_weight * depth_loss(out.depth.float(), batch.depth, lc.depth_kind)
    return terms


class PretrainTask:
    name = "pretrain"
    fine_tuning = TASK_TRAITS["pretrain"].fine_tuning
    metrics: tuple[Metric, ...] = ()

    def needs_clip(self, cfg: Config) -> bool:
        return True  # the frozen image encoder gives the 2D side of every pair

    def build_model(self, cfg: Config, bundle, class_names: list[str], restoring: bool = False) -> nn.Module:
        return Text4PointPretrain(cfg, bundle, class_names)

    def loss_terms(self, core, batch, out, cfg: Config, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return pretrain_terms(core, batch, out, cfg, gen)

    def evaluate(self, core, loader, cfg: Config, device: torch.device, class_names: list[str]) -> dict[str, float]:
        return {}

    def predict(self, core, batch, cfg: Config) -> dict[str, np.ndarray]:
        raise ConfigError("a pre-training checkpoint predicts nothing: fine-tune it first (t4p finetune)")


TASK = PretrainTask()
