"""Instance segmentation on the Text4Point fine-tuning model (Table 2), PointGroup-style.

The fine-tuning model (``Text4PointSeg``: SR-UNet + TQM + text path + semantic head, the same
parameter names, so a pre-training checkpoint transfers by name) gains an offset head on the
decoder feature z3D: each voxel predicts the vector from its points to their instance's centre.
At inference, points are shifted by their voxel's offset and, per predicted semantic class, the
shifted points are grouped into connected components of the radius graph
(``insseg.cluster_radius``); components smaller than ``insseg.cluster_min_points`` are
dropped and each proposal is scored by its mean probability of the class. The paper follows
PointContrast's setup and does not detail the head; this is PointGroup's offset branch and
"shifted set" clustering, without its ScoreNet (the score is the mean semantic probability).

The offset loss is PointGroup's: L1 to the centre (sum over xyz, mean over points with an
instance) plus the negative cosine between predicted and true directions, weighted by
``insseg.offset_weight``; it is computed on the original points.

The radius graph is built on a cell grid, linear in the points (no N x N distances):
cells of side r / sqrt(3), so all points of one cell are within r of each other and joined
outright; neighbouring cells (offsets in [-2, 2]^3) are joined when some pair of their points is
within r. Pass 1 tests up to 4 points per cell, pass 2 re-tests (up to 256 points per cell)
only the cell pairs that pass 1 could not decide and that still lie in different components.
The result is exact whenever every cell holds at most 256 points (a cell of side r / sqrt(3) =
1.7 cm for r = 3 cm); beyond that, denser cells test their first 256 points.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from t4p.config import Config
from t4p.models.text4point import SegOutput, Text4PointSeg

# --------------------------------------------------------------------------- model


class OffsetHead(nn.Module):
    """Per-voxel offset to the instance centre: ``(M, C) -> (M, 3)`` metres (PointGroup's 2-layer MLP)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, in_channels), nn.BatchNorm1d(in_channels), nn.ReLU(inplace=True),
            nn.Linear(in_channels, 3),
        )

    def forward(self, z3d: torch.Tensor) -> torch.Tensor:
        return self.mlp(z3d)  # (M, 3)


@dataclass
class InsSegOutput(SegOutput):
    offsets: torch.Tensor  # (M, 3) per voxel, metres


class Text4PointInsSeg(Text4PointSeg):
    """``Text4PointSeg`` (semantic logits, TQM, prompt learning, aux loss inputs) + an offset head."""

    def __init__(self, cfg: Config, bundle, class_names: list[str]) -> None:
        super().__init__(cfg, bundle, class_names)
        self.offset_head = OffsetHead(cfg.model.dec_planes[-1])

    def forward(self, batch) -> InsSegOutput:
        out = super().forward(batch)
        offsets = self.offset_head(out.out3d.z3d)  # (M, 3)
        return InsSegOutput(logits=out.logits, out3d=out.out3d, text=out.text, offsets=offsets)


# --------------------------------------------------------------------------- loss


def instance_centres(xyz: torch.Tensor, instances: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """Centre (mean position) of each point's instance within its sample: ``(Np, 3)``; rows without one are 0."""
    has = instances >= 0
    key = sample.long() * (int(instances.max().clamp(min=0)) + 1) + instances.clamp(min=0)  # (Np,)
    uniq, inv = torch.unique(key[has], return_inverse=True)
    sums = torch.zeros(len(uniq), 3, dtype=xyz.dtype, device=xyz.device).index_add_(0, inv, xyz[has])
    counts = torch.bincount(inv, minlength=len(uniq)).clamp(min=1).to(xyz.dtype)
    centres = torch.zeros_like(xyz)
    centres[has] = (sums / counts[:, None])[inv]
    return centres


def offset_loss(offsets: torch.Tensor, batch) -> dict[str, torch.Tensor]:
    """PointGroup's L_reg (L1) and L_dir (negative cosine) on the original points with an instance."""
    point_off = offsets[batch.point2voxel].float()  # (Np, 3) each point takes its voxel's offset
    sample = batch.coords[batch.point2voxel, 0]  # (Np,)
    target = instance_centres(batch.point_xyz.float(), batch.point_instances, sample) - batch.point_xyz.float()
    has = (batch.point_instances >= 0).float()  # (Np,)
    n = has.sum().clamp(min=1.0)
    l_reg = ((point_off - target).abs().sum(1) * has).sum() / n
    cos = nn.functional.cosine_similarity(point_off, target, dim=1, eps=1e-8)  # (Np,)
    l_dir = -(cos * has).sum() / n
    return {"loss_offset": l_reg, "loss_dir": l_dir}


# --------------------------------------------------------------------------- clustering


_BITS = 21  # cell coordinates packed in 3 x 21 bits of an int64 key
_PASS1_CAP, _PASS2_CAP = 4, 256
_CHUNK_PAIRS = 1 << 21


def _half_offsets() -> np.ndarray:
    """Neighbour cell offsets in [-2, 2]^3, one of each +/- pair (edges are undirected)."""
    out = [d for d in itertools.product(range(-2, 3), repeat=3) if d > (0, 0, 0)]
    return np.asarray(out, dtype=np.int64)  # (62, 3)


def _pack(q: np.ndarray) -> np.ndarray:
    return (q[:, 0] << (2 * _BITS)) + (q[:, 1] << _BITS) + q[:, 2]


def _any_pair_within(pts, start, count, a, b, r2: float, cap: int) -> np.ndarray:
    """For cell pairs (a[i], b[i]): does any pair of their first ``cap`` points lie within sqrt(r2)?"""
    ca, cb = np.minimum(count[a], cap), np.minimum(count[b], cap)
    n_pairs = ca * cb  # (E,)
    hit = np.zeros(len(a), dtype=bool)
    csum = np.cumsum(n_pairs)
    lo = 0
    while lo < len(a):  # chunks of about _CHUNK_PAIRS point pairs
        base = csum[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(csum, base + _CHUNK_PAIRS, side="right")))
        reps = np.repeat(np.arange(lo, hi), n_pairs[lo:hi])  # (T,) cell-pair index of each point pair
        local = np.arange(len(reps)) - (csum[reps] - n_pairs[reps] - base)  # rank of the pair in its cell pair
        i = start[a[reps]] + local // cb[reps]
        j = start[b[reps]] + local % cb[reps]
        d2 = ((pts[i] - pts[j]) ** 2).sum(1)  # (T,)
        hit[reps[d2 <= r2]] = True
        lo = hi
    return hit


def radius_components(xyz: np.ndarray, radius: float) -> np.ndarray:
    """Connected components of the graph joining points closer than ``radius``: ``(N,)`` int64 ids."""
    n = len(xyz)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    side = radius / math.sqrt(3.0)  # cell diagonal = radius: points of one cell are joined outright
    q = np.floor((xyz - xyz.min(0)) / side).astype(np.int64) + 2  # (N, 3) >= 2 so that q + d >= 0
    if q.max() >= (1 << _BITS) - 3:
        raise ValueError(f"radius_components: extent / (radius / sqrt 3) exceeds 2^{_BITS} cells; radius={radius}")
    cell_keys, point_cell = np.unique(_pack(q), return_inverse=True)  # (C,), (N,)
    order = np.argsort(point_cell, kind="stable")
    pts = xyz[order].astype(np.float64)  # points grouped by cell
    count = np.bincount(point_cell, minlength=len(cell_keys))
    start = np.cumsum(count) - count
    r2 = float(radius) ** 2
    edges_a, edges_b, undecided_a, undecided_b = [], [], [], []
    for d in _half_offsets():
        target = cell_keys + _pack(d[None])[0]
        nb = np.searchsorted(cell_keys, target)
        ok = nb < len(cell_keys)
        ok[ok] = cell_keys[nb[ok]] == target[ok]
        a, b = np.flatnonzero(ok), nb[ok]
        hit = _any_pair_within(pts, start, count, a, b, r2, _PASS1_CAP)
        edges_a.append(a[hit])
        edges_b.append(b[hit])
        unsure = ~hit & (np.maximum(count[a], count[b]) > _PASS1_CAP)
        undecided_a.append(a[unsure])
        undecided_b.append(b[unsure])
    comp = _components(len(cell_keys), edges_a, edges_b)
    a, b = np.concatenate(undecided_a), np.concatenate(undecided_b)
    apart = comp[a] != comp[b]
    if apart.any():
        a, b = a[apart], b[apart]
        hit = _any_pair_within(pts, start, count, a, b, r2, _PASS2_CAP)
        comp = _components(len(cell_keys), edges_a + [a[hit]], edges_b + [b[hit]])
    return comp[point_cell]


def _components(n: int, edges_a: list[np.ndarray], edges_b: list[np.ndarray]) -> np.ndarray:
    a = np.concatenate(edges_a) if edges_a else np.zeros(0, dtype=np.int64)
    b = np.concatenate(edges_b) if edges_b else np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n)).tocsr()
    return connected_components(graph, directed=False)[1].astype(np.int64)


@dataclass
class Clusters:
    """Disjoint proposals on N points: ``ids`` (N,) proposal per point (-1 = none), ``labels``/``scores`` (P,)."""

    ids: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


def cluster_instances(shifted: np.ndarray, prob: np.ndarray, radius: float, min_points: int,
                      classes: list[int] | None = None) -> Clusters:
    """Per predicted class, radius-graph components of the shifted points ``(N, 3)``; ``prob`` ``(N, K)``."""
    n, k = prob.shape
    pred = prob.argmax(1)  # (N,)
    ids = np.full(n, -1, dtype=np.int64)
    labels: list[int] = []
    scores: list[float] = []
    for c in range(k) if classes is None else classes:
        sel = np.flatnonzero(pred == c)
        if len(sel) < max(1, min_points):
            continue
        comp = radius_components(shifted[sel], radius)  # (n_c,)
        size = np.bincount(comp)
        big = np.flatnonzero(size >= min_points)  # kept components
        if len(big) == 0:
            continue
        new_id = np.full(len(size), -1, dtype=np.int64)
        new_id[big] = len(labels) + np.arange(len(big))
        ids[sel] = new_id[comp]
        mean_prob = np.bincount(comp, weights=prob[sel, c], minlength=len(size)) / np.maximum(size, 1)
        labels += [c] * len(big)
        scores += mean_prob[big].tolist()
    return Clusters(ids, np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float64))


@torch.no_grad()
def predict_scene_instances(out: InsSegOutput, batch, sample: int, radius: float, min_points: int,
                            shift: bool = True) -> Clusters:
    """Proposals on the original points of batch sample ``sample`` (in their order within the batch).

    ``shift=False`` clusters the original coordinates instead (PointGroup's second point set).
    """
    p2v = batch.point2voxel
    mine = batch.coords[p2v, 0] == sample  # (Np,)
    vox = p2v[mine]
    prob = torch.softmax(out.logits.float(), 1)[vox].cpu().numpy()  # (n, K)
    xyz = batch.point_xyz[mine].float()
    if shift:
        xyz = xyz + out.offsets.float()[vox]  # (n, 3)
    return cluster_instances(xyz.cpu().numpy(), prob, radius, min_points)
