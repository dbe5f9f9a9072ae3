"""Text4Point's losses: pixel-voxel InfoNCE (Eq. 14), pair sampling and lifting, auxiliary loss (Eq. 15-16).

Correspondences at two resolutions (docs/SPEC.md): the data gives full-resolution pixel-voxel
pairs. L_d uses them directly (z2D at full resolution, z3D per voxel). L_e lifts each fine pair
to (CLIP grid cell, stride-16 encoder voxel) and merges duplicates, optionally weighting each
merged pair by how many fine pairs it absorbed (``loss.coarse_pair_weighting``).

The depth loss lives with the 2D decoder (``t4p.models.decoder_2d.depth_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

# --------------------------------------------------------------------------- Eq. 14


def pixel_voxel_infonce(
    f2d: torch.Tensor, f3d: torch.Tensor, tau: float, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 14 over one set S of P corresponding pairs: row k of ``f2d`` (P, C) matches row k of ``f3d``.

    Symmetric: each pixel against every voxel of S, and each voxel against every pixel of S, on
    cosine similarities divided by ``tau``. ``weights`` (P,) turns the mean over S into a weighted mean.
    """
    a = F.normalize(f2d.float(), dim=1)  # (P, C)
    b = F.normalize(f3d.float(), dim=1)  # (P, C)
    logits = a @ b.t() / tau  # (P, P): cos(h2D_i, h3D_p) / tau
    target = torch.arange(len(a), device=a.device)
    per_pair = F.cross_entropy(logits, target, reduction="none") + F.cross_entropy(
        logits.t(), target, reduction="none"
    )  # (P,)
    if weights is None:
        return per_pair.mean()
    w = weights.to(per_pair)
    return (per_pair * w).sum() / w.sum()


def framewise_infonce(
    f2d: torch.Tensor, f3d: torch.Tensor, frame: torch.Tensor, tau: float, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 14 with S = the pairs of one frame (negatives come from the same frame), averaged over frames.

    Each frame contributes in proportion to its number of pairs (or its total weight), so the
    result is the mean of the per-pair terms over all frames' pairs.
    """
    if len(frame) == 0:
        return f3d.sum() * 0.0  # keeps the graph; no pairs, no signal
    total, norm = f3d.new_zeros(()), 0.0
    for fid in torch.unique(frame):
        sel = (frame == fid).nonzero(as_tuple=True)[0]
        w = None if weights is None else weights[sel]
        size = float(len(sel)) if w is None else float(w.sum())
        total = total + pixel_voxel_infonce(f2d[sel], f3d[sel], tau, w) * size
        norm += size
    return total / norm


def sample_pairs(frame: torch.Tensor, max_pairs: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of at most ``max_pairs`` pairs per frame, drawn without replacement by ``generator``.

    ``frame`` (P,) is the frame of each pair; the result is sorted by frame, then pair index.
    """
    keep = []
    for fid in torch.unique(frame.cpu()):
        sel = (frame.cpu() == fid).nonzero(as_tuple=True)[0]  # (P_f,)
        if len(sel) > max_pairs:
            perm = torch.randperm(len(sel), generator=generator)[:max_pairs]
            sel = sel[perm.sort().values]
        keep.append(sel)
    if not keep:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat(keep).to(frame.device)


@dataclass
class CoarsePairs:
    """Fine pixel-voxel pairs lifted to (CLIP grid cell, encoder voxel), duplicates merged."""

    frame: torch.Tensor  # (Q,) frame index
    cell: torch.Tensor  # (Q,) row-major cell index in the (h, w) CLIP grid
    voxel: torch.Tensor  # (Q,) row of the stride-16 encoder tensor
    count: torch.Tensor  # (Q,) number of fine pairs merged into each coarse pair


def pixel_cell_index(pixel: torch.Tensor, image_width: int, grid_hw: tuple[int, int], stride: int) -> torch.Tensor:
    """Full-resolution pixel ids ``v * W + u`` (P,) -> row of the flattened (h * w) CLIP grid (P,).

    The one pixel-to-cell mapping of training. ``grid_hw`` is the encoder's real output size and
    ``stride`` its downsampling (32 for CLIP's ModifiedResNet): its pools floor, so cell (i, j) covers
    pixels [stride i, stride i + stride) and the bottom/right remainder (rows 224..239 of a 240-row
    image on a 7-row grid) belongs to the last cell.
    """
    h, w = grid_hw
    v = torch.div(pixel, image_width, rounding_mode="floor")
    u = pixel - v * image_width
    i = torch.div(v, stride, rounding_mode="floor").clamp_max(h - 1)
    j = torch.div(u, stride, rounding_mode="floor").clamp_max(w - 1)
    return i * w + j  # (P,)


def lift_pairs(
    pair_frame: torch.Tensor,
    pair_pixel: torch.Tensor,
    pair_voxel: torch.Tensor,
    image_hw: tuple[int, int],
    grid_hw: tuple[int, int],
    voxel_to_coarse: torch.Tensor,
    *,
    stride: int,
) -> CoarsePairs:
    """Lift full-resolution pairs to the encoder resolutions (SPEC: "Correspondences at two resolutions").

    ``pair_pixel = v * W + u`` at ``image_hw = (H, W)`` goes to its cell of the encoder's ``grid_hw``
    (``pixel_cell_index`` with the encoder's ``stride``). ``voxel_to_coarse`` (M,) maps each input voxel
    to its encoder row (``t4p.sparse.coarse_index``; -1 = none, such pairs are dropped).
    """
    cell = pixel_cell_index(pair_pixel, image_hw[1], grid_hw, stride)  # (P,)
    coarse = voxel_to_coarse[pair_voxel]  # (P,)
    ok = coarse >= 0
    keys = torch.stack([pair_frame[ok], cell[ok], coarse[ok]], dim=1)  # (P', 3)
    uniq, count = torch.unique(keys, dim=0, return_counts=True)  # (Q, 3), (Q,)
    return CoarsePairs(frame=uniq[:, 0], cell=uniq[:, 1], voxel=uniq[:, 2], count=count)


# --------------------------------------------------------------------------- Eq. 15-16


def aux_pseudo_labels(
    enc_coords: torch.Tensor,
    enc_stride: int,
    voxel_coords: torch.Tensor,
    voxel_labels: torch.Tensor,
    voxel_size: float,
    aux_range: float,
    ignore_label: int = -100,
) -> torch.Tensor:
    """Pseudo-labels of the encoder points (Sec. 3.4): the mode of their neighbours' labels.

    ``enc_coords`` (n, 4) and ``voxel_coords`` (M, 4) are (batch, x, y, z) on the finest grid (an
    encoder point at stride s covers the cell [c, c + s)). The neighbours of an encoder point are the
    input voxels (with a non-ignored label, same batch item) inside its cell when ``aux_range`` is 0,
    else those whose centre lies within ``aux_range`` metres of the cell's centre. Ties go to the
    smallest label; points without neighbours get ``ignore_label`` (skipped by the loss).
    """
    device = enc_coords.device
    enc = enc_coords.cpu().numpy().astype(np.int64)
    vox = voxel_coords.cpu().numpy().astype(np.int64)
    lab = voxel_labels.cpu().numpy().astype(np.int64)
    valid = lab != ignore_label
    vox, lab = vox[valid], lab[valid]
    out = np.full(len(enc), ignore_label, dtype=np.int64)
    if len(lab) == 0 or len(enc) == 0:
        return torch.from_numpy(out).to(device)
    if aux_range == 0:
        enc_idx, vox_idx = _same_cell_pairs(enc, vox, enc_stride)
    else:
        enc_idx, vox_idx = _ball_pairs(enc, vox, enc_stride, aux_range / voxel_size)
    if len(enc_idx):
        num_classes = int(lab.max()) + 1
        votes = np.bincount(enc_idx * num_classes + lab[vox_idx], minlength=len(enc) * num_classes)
        votes = votes.reshape(len(enc), num_classes)  # (n, K)
        has = votes.sum(1) > 0
        out[has] = votes[has].argmax(1)
    return torch.from_numpy(out).to(device)


def _same_cell_pairs(enc: np.ndarray, vox: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(encoder row, voxel row) for every input voxel lying in an encoder point's cell."""
    cell = vox.copy()
    cell[:, 1:] = np.floor_divide(vox[:, 1:], stride) * stride
    both = np.concatenate([enc, cell])
    _, inverse = np.unique(both, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    enc_of_key = np.full(inverse.max() + 1, -1, dtype=np.int64)
    enc_of_key[inverse[: len(enc)]] = np.arange(len(enc))
    enc_idx = enc_of_key[inverse[len(enc) :]]  # (M,) encoder row per voxel, -1 if none
    hit = enc_idx >= 0
    return enc_idx[hit], np.nonzero(hit)[0]


def _ball_pairs(
    enc: np.ndarray, vox: np.ndarray, stride: int, radius_vox: float
) -> tuple[np.ndarray, np.ndarray]:
    """(encoder row, voxel row) for voxel centres within ``radius_vox`` (voxel units) of a cell centre."""
    enc_rows, vox_rows = [], []
    for b in np.unique(enc[:, 0]):
        e_sel = np.nonzero(enc[:, 0] == b)[0]
        v_sel = np.nonzero(vox[:, 0] == b)[0]
        if len(v_sel) == 0:
            continue
        tree = cKDTree(vox[v_sel, 1:] + 0.5)  # voxel centres
        # 2-D query points: an object array holding one neighbour index list per row (the stubs can't see the rank)
        hits = cast("np.ndarray", tree.query_ball_point(enc[e_sel, 1:] + stride / 2.0, r=radius_vox))
        for row, found in zip(e_sel, hits, strict=True):
            enc_rows.append(np.full(len(found), row, dtype=np.int64))
            vox_rows.append(v_sel[np.asarray(found, dtype=np.int64)])
    if not enc_rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(enc_rows), np.concatenate(vox_rows)


def aux_loss(h3d_hat: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 15-16: cross-entropy of softmax(cos(h3D_hat_i, t'_j) / tau) against pseudo-labels.

    ``h3d_hat`` (n, d), ``text`` (K', d), ``labels`` (n,) with -100 (any negative) = no neighbour, skipped.
    """
    s = F.normalize(h3d_hat.float(), dim=1) @ F.normalize(text.float(), dim=1).t()  # (n, K'), Eq. 15
    keep = labels >= 0
    if not bool(keep.any()):
        return s.sum() * 0.0
    return F.cross_entropy(s[keep] / tau, labels[keep])  # Eq. 16
