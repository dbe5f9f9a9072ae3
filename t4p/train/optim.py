"""The optimiser (``optim.name``: momentum SGD or Adam) and the learning-rate schedules (exp, poly, cosine,
constant, warm-up)."""

from __future__ import annotations

import math

import torch
from torch import nn

from t4p.config import OptimConfig


def decay_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Parameter groups of the trainable parameters with their weight decay.

    ``optim.wd_exclude_norm_bias``: norms, biases and TQM's alpha/beta (every parameter with <= 1
    dimension) get none; otherwise every parameter decays (the paper recipes).
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        excluded = cfg.wd_exclude_norm_bias and (p.ndim <= 1 or name.endswith((".alpha", ".beta")))
        (no_decay if excluded else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("build_optimizer: the model has no trainable parameters")
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """``optim.name`` over the trainable parameters (weight decay per ``decay_groups``): momentum SGD
    (segmentation, pre-training) or Adam (VoteNet's, the detection recipes: lr 0.001, cosine)."""
    groups = decay_groups(model, cfg)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening)


def lr_factor(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """Multiplier of ``optim.lr`` at ``step`` (0-based): linear warm-up, then the schedule."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = step - cfg.warmup_steps
    span = max(1, max_steps - cfg.warmup_steps)
    if cfg.schedule == "exp":  # PointContrast: gamma every exp_every steps
        return cfg.exp_gamma ** (t // max(1, cfg.exp_every))
    if cfg.schedule == "poly":
        return max(0.0, 1.0 - t / span) ** cfg.poly_power
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(t, span) / span))
    return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A step-wise scheduler (call ``.step()`` once per optimiser step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, max_steps))
