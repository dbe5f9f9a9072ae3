"""VoteNet (Qi et al., ICCV 2019) on the Text4Point SR-UNet backbone (paper Sec. 4.3, App. B.2).

Following PointContrast, VoteNet's PointNet++ backbone is replaced by the sparse UNet: the decoder
output z3D (per voxel) is read back at the input points, and the seeds are ``det.num_seeds``
points per scene (farthest point sampling or a random subset of one point per voxel), each with
VoteNet's height feature appended (``det.seed_height``). Then VoteNet's heads:

* voting: an MLP predicts a 3D offset and a feature residual per seed (vote = seed + offset);
* aggregation: farthest point sampling picks ``det.num_proposals`` votes as cluster centres,
  a ball query (radius ``det.vote_radius``) groups ``det.vote_nsample`` votes per cluster;
* proposal: a PointNet (shared MLP + max-pool + MLP) outputs objectness (2), centre residual (3),
  heading bins (class + normalised residual), size clusters (one per class, mean sizes from the
  training set: class + normalised residual) and the semantic class;
* decoding to boxes and 3D NMS (``predict``).

The backbone is ``Text4Point3D`` with the text path (TQM, prompt learning) under the same parameter
names as the segmentation model (``backbone.*``, ``text.*``), so pre-trained weights transfer by name.
FPS and the ball query are plain vectorised torch (CPU and GPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from t4p.config import Config
from t4p.models.box_ops import iou_3d
from t4p.models.text4point import build_finetune_3d, make_sparse_input

# --------------------------------------------------------------------------- sampling and grouping


def farthest_point_sample(xyz: torch.Tensor, m: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(B, N, 3) -> (B, m) indices by iterative farthest point sampling, starting at the first valid point.

    Invalid (padding) points are never picked while valid ones remain; when m exceeds the valid
    count, already-picked points repeat.
    """
    b, n, _ = xyz.shape
    valid = torch.ones(b, n, dtype=torch.bool, device=xyz.device) if valid is None else valid
    dist = torch.full((b, n), float("inf"), device=xyz.device, dtype=xyz.dtype)
    dist = dist.masked_fill(~valid, -1.0)
    out = torch.empty(b, m, dtype=torch.long, device=xyz.device)
    cur = valid.to(torch.uint8).argmax(1)  # (B,)
    rows = torch.arange(b, device=xyz.device)
    for i in range(m):
        out[:, i] = cur
        d = ((xyz - xyz[rows, cur][:, None, :]) ** 2).sum(-1)  # (B, N)
        dist = torch.minimum(dist, d)  # padding keeps -1
        cur = dist.argmax(1)
    return out


def ball_query(
    centres: torch.Tensor, xyz: torch.Tensor, radius: float, nsample: int, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, P, 3), (B, N, 3) -> (B, P, nsample): the first ``nsample`` points (in index order) within
    ``radius`` of each centre, padded with the first one found (PointNet++'s convention); a centre
    with no point in range takes its nearest point."""
    n = xyz.shape[1]
    d2 = torch.cdist(centres, xyz) ** 2  # (B, P, N)
    inside = d2 <= radius**2
    if valid is not None:
        inside &= valid[:, None, :]
        d2 = d2.masked_fill(~valid[:, None, :], float("inf"))
    ar = torch.arange(n, device=xyz.device)
    key = torch.where(inside, ar, torch.full_like(ar, n))  # (B, P, N)
    k = min(nsample, n)
    first = key.topk(k, dim=-1, largest=False, sorted=True).values  # (B, P, k) ascending
    fallback = torch.where(first[..., 0] < n, first[..., 0], d2.argmin(-1))  # (B, P)
    idx = torch.where(first < n, first, fallback[..., None])
    if k < nsample:
        idx = torch.cat([idx, fallback[..., None].expand(-1, -1, nsample - k)], -1)
    return idx


def voxel_representatives(point2voxel: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """(Np,) voxel of each point -> (V,) the first point row of every voxel that has points, by voxel."""
    n = point2voxel.shape[0]
    first = torch.full((num_voxels,), n, dtype=torch.long, device=point2voxel.device)
    first = first.scatter_reduce(0, point2voxel.long(), torch.arange(n, device=point2voxel.device), "amin")
    return first[first < n]


def floor_height(z: torch.Tensor, valid: torch.Tensor, q: float = 0.01) -> torch.Tensor:
    """(B, N) point heights, (B, N) validity -> (B,) the floor: the ``q`` quantile of each scene's z (VoteNet)."""
    floors = [torch.quantile(zb[vb], q) if vb.any() else zb.new_zeros(()) for zb, vb in zip(z, valid, strict=True)]
    return torch.stack(floors)


def gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, N, C), idx (B, ...) -> (B, ..., C)."""
    b, c = x.shape[0], x.shape[-1]
    flat = idx.reshape(b, -1)
    out = torch.gather(x, 1, flat[..., None].expand(-1, -1, c))
    return out.view(*idx.shape, c)


def scene_rows(scene_of_point: torch.Tensor, num_scenes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Group point rows by scene: (rows (B, Nmax) long, valid (B, Nmax) bool); padding rows are 0."""
    counts = torch.bincount(scene_of_point, minlength=num_scenes)  # (B,)
    order = torch.argsort(scene_of_point, stable=True)
    start = torch.cumsum(counts, 0) - counts
    scene = scene_of_point[order]
    pos = torch.arange(len(order), device=order.device) - start[scene]
    nmax = int(counts.max()) if len(counts) else 0
    rows = torch.zeros(num_scenes, nmax, dtype=torch.long, device=order.device)
    valid = torch.zeros(num_scenes, nmax, dtype=torch.bool, device=order.device)
    rows[scene, pos] = order
    valid[scene, pos] = True
    return rows, valid


# --------------------------------------------------------------------------- heads


def mlp(channels: list[int], last_plain: bool = True) -> nn.Sequential:
    """Linear-BN-ReLU layers on (N, C); the last one a plain Linear when ``last_plain``."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
        last = i == len(channels) - 2
        layers.append(nn.Linear(a, b, bias=last and last_plain))
        if not (last and last_plain):
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _apply(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a (N, C) network on (..., C)."""
    return net(x.reshape(-1, x.shape[-1])).view(*x.shape[:-1], -1)


class VotingModule(nn.Module):
    """Seed (xyz, feature) -> vote (xyz + offset, normalised feature + residual) (VoteNet Sec. 4.2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = mlp([channels, channels, channels, 3 + channels])

    def forward(self, seed_xyz: torch.Tensor, seed_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = _apply(self.net, seed_feats)  # (B, S, 3 + C)
        vote_xyz = seed_xyz + out[..., :3]  # (B, S, 3)
        vote_feats = seed_feats + out[..., 3:]
        return vote_xyz, nn.functional.normalize(vote_feats, dim=-1)  # (B, S, C), VoteNet normalises


class ProposalModule(nn.Module):
    """Vote aggregation (FPS + ball grouping + PointNet) and the proposal head (VoteNet Sec. 4.3)."""

    def __init__(self, channels: int, width: int, num_classes: int, num_heading_bins: int, cfg: Config) -> None:
        super().__init__()
        ft = cfg.det
        self.num_proposals, self.radius, self.nsample = ft.num_proposals, ft.vote_radius, ft.vote_nsample
        self.num_classes, self.num_heading_bins = num_classes, num_heading_bins
        self.shared = mlp([channels + 3, width, width, width], last_plain=False)
        out = 2 + 3 + 2 * num_heading_bins + 4 * num_classes + num_classes
        self.head = mlp([width, width, width, out])

    def forward(self, vote_xyz: torch.Tensor, vote_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (cluster centres (B, P, 3), raw head output (B, P, out))."""
        centre_idx = farthest_point_sample(vote_xyz.detach(), self.num_proposals)  # (B, P)
        centres = gather_rows(vote_xyz, centre_idx)  # (B, P, 3)
        group = ball_query(centres.detach(), vote_xyz.detach(), self.radius, self.nsample)  # (B, P, ns)
        rel = (gather_rows(vote_xyz, group) - centres[:, :, None]) / self.radius  # (B, P, ns, 3)
        grouped = torch.cat([rel, gather_rows(vote_feats, group)], -1)  # (B, P, ns, 3 + C)
        pooled = _apply(self.shared, grouped).max(2).values  # (B, P, width)
        return centres, _apply(self.head, pooled)  # (B, P, out)


# --------------------------------------------------------------------------- outputs and decoding


@dataclass
class DetOutput:
    seed_xyz: torch.Tensor  # (B, S, 3)
    vote_xyz: torch.Tensor  # (B, S, 3)
    centres: torch.Tensor  # (B, P, 3) aggregated vote positions (cluster centres)
    objectness: torch.Tensor  # (B, P, 2) logits
    centre: torch.Tensor  # (B, P, 3) box centres
    heading_scores: torch.Tensor  # (B, P, NH)
    heading_res_norm: torch.Tensor  # (B, P, NH) residual / (pi / NH)
    size_scores: torch.Tensor  # (B, P, NS)
    size_res_norm: torch.Tensor  # (B, P, NS, 3) residual / mean size
    sem_logits: torch.Tensor  # (B, P, K)
    out3d: object | None = None  # Text4Point3D's Out3D (for the auxiliary loss)
    text: torch.Tensor | None = None  # (K, d)


def split_head(raw: torch.Tensor, centres: torch.Tensor, num_heading_bins: int, num_classes: int) -> dict:
    """Slice the proposal head's output (VoteNet's ``decode_scores``)."""
    nh, k = num_heading_bins, num_classes
    b, p = raw.shape[:2]
    i = 5
    heading_scores, i = raw[..., i : i + nh], i + nh
    heading_res_norm, i = raw[..., i : i + nh], i + nh
    size_scores, i = raw[..., i : i + k], i + k
    size_res_norm, i = raw[..., i : i + 3 * k].reshape(b, p, k, 3), i + 3 * k
    return dict(
        objectness=raw[..., 0:2], centre=centres + raw[..., 2:5], heading_scores=heading_scores,
        heading_res_norm=heading_res_norm, size_scores=size_scores, size_res_norm=size_res_norm,
        sem_logits=raw[..., i : i + k],
    )


def angle_to_class(angle: torch.Tensor, num_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Heading -> (bin, residual from the bin centre), bins centred on multiples of 2 pi / NH (VoteNet)."""
    per = 2 * math.pi / num_bins
    shifted = torch.remainder(angle + per / 2, 2 * math.pi)
    cls = torch.div(shifted, per, rounding_mode="floor").long().clamp(max=num_bins - 1)
    return cls, shifted - (cls.to(angle.dtype) * per + per / 2)


def class_to_angle(cls: torch.Tensor, residual: torch.Tensor, num_bins: int) -> torch.Tensor:
    angle = cls.to(residual.dtype) * (2 * math.pi / num_bins) + residual
    return torch.where(angle > math.pi, angle - 2 * math.pi, angle)  # (-pi, pi]


def decode_boxes(out: DetOutput, mean_sizes: torch.Tensor, oriented: bool) -> torch.Tensor:
    """-> (B, P, 7) boxes from the argmax heading bin and size cluster and their residuals."""
    nh = out.heading_scores.shape[-1]
    hcls = out.heading_scores.argmax(-1)  # (B, P)
    hres = torch.gather(out.heading_res_norm, -1, hcls[..., None]).squeeze(-1) * (math.pi / nh)
    heading = class_to_angle(hcls, hres, nh) if oriented else torch.zeros_like(hres)
    scls = out.size_scores.argmax(-1)  # (B, P)
    sres = torch.gather(out.size_res_norm, 2, scls[..., None, None].expand(-1, -1, 1, 3)).squeeze(2)
    size = (mean_sizes[scls] * (1 + sres)).clamp(min=1e-3)  # (B, P, 3); residual = norm * mean size
    return torch.cat([out.centre, size, heading[..., None]], -1)


def nms_3d(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, classes: torch.Tensor | None = None,
    oriented: bool = True,
) -> torch.Tensor:
    """Greedy 3D NMS -> indices kept, by descending score; boxes of different classes never suppress."""
    order = torch.argsort(scores, descending=True)
    iou = iou_3d(boxes[order], boxes[order], oriented)  # (K, K)
    if classes is not None:
        c = classes[order]
        iou = iou * (c[:, None] == c[None, :])
    over = (iou > iou_threshold).cpu()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


@torch.no_grad()
def predict(out: DetOutput, mean_sizes: torch.Tensor, cfg: Config) -> list[torch.Tensor]:
    """Per scene (D, 9) rows ``box (7), class, score`` after the confidence threshold and per-class NMS.

    As VoteNet's evaluation: NMS on the objectness probability within each argmax class; with
    ``det.per_class_proposal`` every kept box is then scored for every class
    (objectness x class probability).
    """
    ft = cfg.det
    boxes = decode_boxes(out, mean_sizes, ft.oriented_boxes)  # (B, P, 7)
    obj = out.objectness.float().softmax(-1)[..., 1]  # (B, P)
    sem = out.sem_logits.float().softmax(-1)  # (B, P, K)
    k = sem.shape[-1]
    results = []
    for b in range(boxes.shape[0]):
        keep = (obj[b] > ft.conf_threshold).nonzero().squeeze(1)
        cls = sem[b, keep].argmax(-1)
        kept = keep[nms_3d(boxes[b, keep], obj[b, keep], ft.nms_iou, cls, ft.oriented_boxes)]
        bx = boxes[b, kept].float()
        if ft.per_class_proposal:
            rows = [torch.cat([bx, torch.full_like(bx[:, :1], c), (obj[b, kept] * sem[b, kept, c])[:, None]], 1)
                    for c in range(k)]
            results.append(torch.cat(rows, 0) if rows else bx.new_zeros(0, 9))
        else:
            c = sem[b, kept].argmax(-1).float()
            results.append(torch.cat([bx, c[:, None], obj[b, kept][:, None]], 1))
    return results


# --------------------------------------------------------------------------- the model


class VoteNetDetector(nn.Module):
    """Text4Point 3D backbone (SR-UNet + TQM + text path) + VoteNet voting, aggregation and proposal heads."""

    mean_sizes: torch.Tensor  # buffer (K, 3), registered in __init__

    def __init__(self, cfg: Config, bundle, class_names: list[str], mean_sizes: torch.Tensor) -> None:
        super().__init__()
        m, ft = cfg.model, cfg.det
        if mean_sizes.shape != (len(class_names), 3):
            raise ValueError(
                f"VoteNetDetector: mean_sizes must be ({len(class_names)}, 3), got {tuple(mean_sizes.shape)}"
            )
        self.cfg = cfg
        self.backend, self.text, self.backbone = build_finetune_3d(cfg, bundle, class_names, "VoteNetDetector")
        self.num_heading_bins = ft.num_heading_bins if ft.oriented_boxes else 1  # ScanNet: axis-aligned
        c = m.dec_planes[-1] + int(ft.seed_height)  # decoder feature (+ height above the floor)
        self.seed_proj = nn.Identity() if c == ft.mlp_width else nn.Linear(c, ft.mlp_width)
        self.vote = VotingModule(ft.mlp_width)
        self.proposal = ProposalModule(ft.mlp_width, ft.mlp_width, len(class_names), self.num_heading_bins, cfg)
        self.register_buffer("mean_sizes", mean_sizes.float().clone())  # (K, 3) from the training set

    # the three stages are separate methods so bench/votenet_step.py can time them
    def run_backbone(self, batch):
        text = self.text() if self.text is not None else None  # (K, d)
        out3d = self.backbone(make_sparse_input(self.backend, batch.coords, batch.feats), text)  # z3d (M, C)
        return out3d, text

    def sample_seeds(self, batch, z3d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Seeds per scene from the per-point features: (seed_xyz (B, S, 3), seed_feats (B, S, C)).

        Candidates are one point per voxel (its first): points of one voxel share its feature, and FPS
        over voxels instead of points costs a fraction (~5.7k voxels for ~35k points in a smoke room at 15 cm)."""
        ft = self.cfg.det
        reps = voxel_representatives(batch.point2voxel, batch.coords.shape[0])  # (V,) point rows
        scene = batch.coords[batch.point2voxel[reps], 0].long()  # (V,)
        local, valid = scene_rows(scene, len(batch.scene_ids))  # (B, Vmax)
        rows = reps[local]  # (B, Vmax) point rows
        xyz = batch.point_xyz[rows]  # (B, Vmax, 3)
        if ft.seed_sampling == "fps":
            pick = farthest_point_sample(xyz, ft.num_seeds, valid)  # (B, S)
        else:
            noise = torch.rand(valid.shape, device=xyz.device).masked_fill(~valid, -1.0)
            pick = noise.topk(min(ft.num_seeds, valid.shape[1]), dim=1).indices
            if pick.shape[1] < ft.num_seeds:
                pick = pick.repeat(1, math.ceil(ft.num_seeds / pick.shape[1]))[:, : ft.num_seeds]
        seed_rows = torch.gather(rows, 1, pick)  # (B, S) rows into the batch's points
        seed_xyz = batch.point_xyz[seed_rows]  # (B, S, 3)
        seed_feats = z3d[batch.point2voxel[seed_rows]]  # (B, S, C)
        if ft.seed_height:
            height = seed_xyz[..., 2] - floor_height(xyz[..., 2], valid)[:, None]  # (B, S)
            seed_feats = torch.cat([seed_feats, height[..., None]], -1)  # (B, S, C + 1)
        return seed_xyz, self.seed_proj(seed_feats)

    def forward(self, batch) -> DetOutput:
        out3d, text = self.run_backbone(batch)
        seed_xyz, seed_feats = self.sample_seeds(batch, out3d.z3d)
        vote_xyz, vote_feats = self.vote(seed_xyz, seed_feats)  # (B, S, 3), (B, S, C)
        centres, raw = self.proposal(vote_xyz, vote_feats)  # (B, P, 3), (B, P, out)
        parts = split_head(raw, centres, self.num_heading_bins, self.mean_sizes.shape[0])
        return DetOutput(seed_xyz=seed_xyz, vote_xyz=vote_xyz, centres=centres, out3d=out3d, text=text, **parts)

    def predict(self, out: DetOutput) -> list[torch.Tensor]:
        return predict(out, self.mean_sizes, self.cfg)
