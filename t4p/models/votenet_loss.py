"""The VoteNet loss (Qi et al., ICCV 2019, Sec. 4.4 and its reference implementation).

L = scale * (w_vote L_vote + w_obj L_objectness + w_box L_box + w_sem L_sem), with VoteNet's
defaults w = (1, 0.5, 1, 0.1) and scale 10 (``det.*`` fields):

* L_vote: for each seed inside a ground-truth box, the L1 distance of its vote to the nearest of
  the centres of the boxes containing it ("min over GT votes"), averaged over such seeds;
* L_objectness: cross-entropy (class weights 0.2 / 0.8) on proposals whose cluster centre is
  nearer than 0.3 m (positive) or farther than 0.6 m (negative) from every GT centre;
* L_box (positive proposals, each assigned the nearest GT centre): centre chamfer (squared
  distances, both directions), heading bin CE x 0.1 + heading residual Huber, size cluster CE x 0.1
  + size residual Huber (residuals normalised by the bin width / the cluster's mean size);
* L_sem: cross-entropy of the semantic class on positive proposals.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from t4p.config import DetConfig
from t4p.models.box_ops import points_in_boxes
from t4p.models.votenet import DetOutput, angle_to_class

EPS = 1e-6


def pad_boxes(boxes: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (K_i, 8) -> (B, Kmax, 8) zero-padded and a (B, Kmax) mask (Kmax >= 1)."""
    kmax = max([1] + [len(b) for b in boxes])
    out = torch.zeros(len(boxes), kmax, 8, device=device)
    mask = torch.zeros(len(boxes), kmax, dtype=torch.bool, device=device)
    for i, b in enumerate(boxes):
        out[i, : len(b)] = b.to(device=device, dtype=out.dtype)
        mask[i, : len(b)] = True
    return out, mask


def vote_loss(out: DetOutput, gt: torch.Tensor, gt_mask: torch.Tensor) -> torch.Tensor:
    """Mean over seeds inside >= 1 box of min_k |vote - centre_k|_1 over the boxes k containing the seed."""
    total, count = out.vote_xyz.new_zeros(()), 0
    for b in range(gt.shape[0]):
        g = gt[b, gt_mask[b]]  # (K, 8)
        if len(g) == 0:
            continue
        inside = points_in_boxes(out.seed_xyz[b].detach(), g[:, :7])  # (S, K)
        dist = (out.vote_xyz[b][:, None, :] - g[None, :, :3]).abs().sum(-1)  # (S, K)
        dist = dist.masked_fill(~inside, float("inf")).min(1).values  # (S,)
        pos = inside.any(1)
        total = total + dist[pos].sum()
        count += int(pos.sum())
    return total / (count + EPS)


def assign(centres: torch.Tensor, gt: torch.Tensor, gt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest GT centre of each proposal centre: (distance (B, P), index (B, P)); inf when a scene has none."""
    d = torch.cdist(centres.float(), gt[..., :3].float())  # (B, P, Kmax)
    d = d.masked_fill(~gt_mask[:, None, :], float("inf"))
    dist, idx = d.min(-1)
    return dist, idx


def objectness_targets(
    dist: torch.Tensor, ft: DetConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """(label (B, P) long: 1 near a GT centre, mask (B, P) float: near or far; in between ignored)."""
    near, far = dist < ft.near_threshold, dist > ft.far_threshold
    return near.long(), (near | far).float()


def objectness_loss(out: DetOutput, label: torch.Tensor, mask: torch.Tensor, ft: DetConfig) -> torch.Tensor:
    weight = out.objectness.new_tensor([ft.objectness_neg_weight, ft.objectness_pos_weight]).float()
    ce = F.cross_entropy(out.objectness.float().transpose(1, 2), label, weight=weight, reduction="none")  # (B, P)
    return (ce * mask).sum() / (mask.sum() + EPS)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / (mask.sum() + EPS)


def box_loss(
    out: DetOutput, gt: torch.Tensor, gt_mask: torch.Tensor, assigned: torch.Tensor, positive: torch.Tensor,
    mean_sizes: torch.Tensor, ft: DetConfig, oriented: bool,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Centre chamfer + heading (cls, residual) + size (cls, residual) on positive proposals."""
    # centre: chamfer of squared distances, proposal -> nearest GT (positives) and GT -> nearest proposal
    d2 = torch.cdist(out.centre.float(), gt[..., :3]) ** 2  # (B, P, Kmax)
    to_gt = d2.masked_fill(~gt_mask[:, None, :], float("inf")).min(2).values  # (B, P)
    to_gt = torch.where(torch.isfinite(to_gt), to_gt, torch.zeros_like(to_gt))
    to_pred = d2.min(1).values  # (B, Kmax)
    centre = _masked_mean(to_gt, positive) + _masked_mean(to_pred, gt_mask.float())
    target = torch.gather(gt, 1, assigned[..., None].expand(-1, -1, 8))  # (B, P, 8) assigned GT
    cls = target[..., 7].long()  # size cluster = semantic class (VoteNet)
    parts = {"centre": centre}
    if oriented:
        nh = out.heading_scores.shape[-1]
        hcls, hres = angle_to_class(target[..., 6], nh)  # (B, P)
        ce = F.cross_entropy(out.heading_scores.float().transpose(1, 2), hcls, reduction="none")
        parts["heading_cls"] = _masked_mean(ce, positive)
        pred = torch.gather(out.heading_res_norm.float(), 2, hcls[..., None]).squeeze(-1)  # (B, P)
        reg = F.smooth_l1_loss(pred, hres / (math.pi / nh), reduction="none", beta=1.0)  # Huber, delta 1
        parts["heading_reg"] = _masked_mean(reg, positive)
    ce = F.cross_entropy(out.size_scores.float().transpose(1, 2), cls, reduction="none")
    parts["size_cls"] = _masked_mean(ce, positive)
    pred = torch.gather(out.size_res_norm.float(), 2, cls[..., None, None].expand(-1, -1, 1, 3)).squeeze(2)
    mean = mean_sizes[cls]  # (B, P, 3)
    reg = F.smooth_l1_loss(pred, (target[..., 3:6] - mean) / mean, reduction="none", beta=1.0).mean(-1)
    parts["size_reg"] = _masked_mean(reg, positive)
    total = parts["centre"] + ft.size_cls_weight * parts["size_cls"] + parts["size_reg"]
    if oriented:
        total = total + ft.heading_cls_weight * parts["heading_cls"] + parts["heading_reg"]
    return total, parts


def votenet_loss(
    out: DetOutput, boxes: list[torch.Tensor], mean_sizes: torch.Tensor, ft: DetConfig
) -> dict[str, torch.Tensor]:
    """Weighted, scaled terms ``loss_vote, loss_objectness, loss_box, loss_sem`` (their sum is the loss)."""
    gt, gt_mask = pad_boxes(boxes, out.centre.device)  # (B, Kmax, 8), (B, Kmax)
    dist, assigned = assign(out.centres.detach(), gt, gt_mask)  # on the cluster centres, as VoteNet
    label, mask = objectness_targets(dist, ft)
    positive = label.float()
    box, _ = box_loss(out, gt, gt_mask, assigned, positive, mean_sizes, ft, ft.oriented_boxes)
    cls = torch.gather(gt[..., 7], 1, assigned).long()  # (B, P)
    sem = _masked_mean(F.cross_entropy(out.sem_logits.float().transpose(1, 2), cls, reduction="none"), positive)
    s = ft.loss_scale
    return {
        "loss_vote": s * ft.vote_weight * vote_loss(out, gt, gt_mask),
        "loss_objectness": s * ft.objectness_weight * objectness_loss(out, label, mask, ft),
        "loss_box": s * ft.box_weight * box,
        "loss_sem": s * ft.sem_weight * sem,
    }
