"""3D boxes: corners, points-in-box, oriented 3D IoU (BEV polygon clipping x height overlap).

Box layout ``(..., 7)``: centre ``cx cy cz``, FULL sizes ``l w h`` and ``heading``, in the upright
depth frame (z up). ``l`` lies along the heading axis, ``w`` across it. ``heading`` is the
counter-clockwise yaw about +z: the box is the axis-aligned box rotated by ``rotz(heading)``, its
length axis is ``(cos h, sin h)`` (as t4p's augmentation and synthetic scenes use it). NOTE: VoteNet's
SUN RGB-D files store the opposite sign (``heading = -atan2(oy, ox)``, drawn with ``rotz(-heading)``);
readers must negate it. IoU does not depend on the sign convention (a mirror maps one onto the
other); drawing boxes into a point cloud does. ScanNet boxes are axis-aligned (heading 0).

The oriented IoU clips one box's BEV rectangle by the other's four edges (Sutherland-Hodgman), all
pairs at once with a fixed vertex buffer (a convex quadrilateral clipped by 4 half-planes has at
most 8 vertices), then multiplies the clipped area by the z overlap.
"""

from __future__ import annotations

import torch

MAX_VERTS = 16  # a rectangle clipped by four half-planes keeps at most 8 vertices; slack for duplicates on edges


def rotation_z(heading: torch.Tensor) -> torch.Tensor:
    """``rotz(heading)`` as (..., 2, 2): maps box-local xy to world xy."""
    c, s = torch.cos(heading), torch.sin(heading)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def bev_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 7) -> (..., 4, 2) BEV corners, counter-clockwise."""
    half = boxes[..., 3:5] / 2  # (..., 2)
    signs = boxes.new_tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]])  # CCW in the box frame
    local = signs * half.unsqueeze(-2)  # (..., 4, 2)
    rot = rotation_z(boxes[..., 6])  # (..., 2, 2); a rotation keeps the CCW order
    return local @ rot.transpose(-1, -2) + boxes[..., None, :2]


def box_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 7) -> (..., 8, 3): the 4 BEV corners at the bottom, then the same 4 at the top."""
    bev = bev_corners(boxes)  # (..., 4, 2)
    zc, hh = boxes[..., 2:3], boxes[..., 5:6] / 2
    bottom = torch.cat([bev, (zc - hh).unsqueeze(-2).expand(*bev.shape[:-1], 1)], -1)
    top = torch.cat([bev, (zc + hh).unsqueeze(-2).expand(*bev.shape[:-1], 1)], -1)
    return torch.cat([bottom, top], -2)


def points_in_boxes(xyz: torch.Tensor, boxes: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """(N, 3), (K, 7) -> (N, K) bool: point n lies inside box k (grown by ``margin`` metres)."""
    d = xyz[:, None, :] - boxes[None, :, :3]  # (N, K, 3)
    rot = rotation_z(boxes[:, 6])  # (K, 2, 2) local -> world; its transpose maps world -> local
    local = torch.einsum("kji,nkj->nki", rot, d[..., :2])  # (N, K, 2)
    half = boxes[None, :, 3:6] / 2 + margin
    return (local.abs() <= half[..., :2]).all(-1) & (d[..., 2].abs() <= half[..., 2])


# --------------------------------------------------------------------------- polygon clipping


def _cross(o: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """z of (a - o) x (b - o); > 0 when b is left of the directed line o -> a."""
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (b[..., 0] - o[..., 0])


def _compact(points: torch.Tensor, valid: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the valid vertices to the front (order kept) and cut the buffer to ``width``."""
    order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices[:, :width]  # (P, width)
    pts = torch.gather(points, 1, order[..., None].expand(-1, -1, 2))
    return pts, torch.gather(valid, 1, order)


def _clip_half_plane(
    poly: torch.Tensor, count: torch.Tensor, e0: torch.Tensor, e1: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Sutherland-Hodgman pass: keep the part of each polygon left of the edge e0 -> e1.

    ``poly`` (P, V, 2) with ``count`` (P,) leading valid vertices; e0, e1 (P, 2).
    Every input edge (cur -> nxt) emits up to two vertices into slots 2i, 2i+1.
    """
    p, v = poly.shape[:2]
    idx = torch.arange(v, device=poly.device).expand(p, v)
    in_poly = idx < count[:, None]  # (P, V)
    nxt_idx = torch.where(idx + 1 < count[:, None], idx + 1, torch.zeros_like(idx))
    cur, nxt = poly, torch.gather(poly, 1, nxt_idx[..., None].expand(-1, -1, 2))  # (P, V, 2)
    a, b = e0[:, None, :], e1[:, None, :]
    d_cur, d_nxt = _cross(a, b, cur), _cross(a, b, nxt)  # (P, V) signed distances (scaled)
    cur_in, nxt_in = d_cur >= 0, d_nxt >= 0
    t = (d_cur / torch.where(d_cur - d_nxt == 0, torch.ones_like(d_cur), d_cur - d_nxt)).clamp(0, 1)
    cross_pt = cur + t[..., None] * (nxt - cur)  # (P, V, 2) where the edge crosses the line
    # slot 0: the crossing point when the edge crosses; slot 1: nxt when nxt is inside
    emit0 = in_poly & (cur_in != nxt_in)
    emit1 = in_poly & nxt_in
    pts = torch.stack([cross_pt, nxt], 2).reshape(p, 2 * v, 2)
    valid = torch.stack([emit0, emit1], 2).reshape(p, 2 * v)
    new_count = valid.sum(1)
    pts, _ = _compact(pts, valid, min(2 * v, MAX_VERTS))
    return pts, new_count.clamp(max=MAX_VERTS)


def polygon_area(poly: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Shoelace area of (P, V, 2) polygons with ``count`` leading valid vertices (0 below 3)."""
    p, v = poly.shape[:2]
    idx = torch.arange(v, device=poly.device).expand(p, v)
    in_poly = idx < count[:, None]
    nxt_idx = torch.where(idx + 1 < count[:, None], idx + 1, torch.zeros_like(idx))
    nxt = torch.gather(poly, 1, nxt_idx[..., None].expand(-1, -1, 2))
    terms = poly[..., 0] * nxt[..., 1] - poly[..., 1] * nxt[..., 0]  # (P, V)
    area = 0.5 * (terms * in_poly).sum(1)
    return torch.where(count >= 3, area.abs(), torch.zeros_like(area))


def convex_intersection_area(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Area of the intersection of paired convex CCW quadrilaterals (P, 4, 2) and (P, 4, 2)."""
    p = a.shape[0]
    poly = a.new_zeros(p, MAX_VERTS, 2)
    poly[:, :4] = a
    count = torch.full((p,), 4, dtype=torch.long, device=a.device)
    for k in range(4):  # clip by each edge of b (b is CCW: its interior lies left of every edge)
        poly, count = _clip_half_plane(poly, count, b[:, k], b[:, (k + 1) % 4])
    return polygon_area(poly, count)


# --------------------------------------------------------------------------- IoU


def _z_overlap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    top = torch.minimum(a[..., 2] + a[..., 5] / 2, b[..., 2] + b[..., 5] / 2)
    bottom = torch.maximum(a[..., 2] - a[..., 5] / 2, b[..., 2] - b[..., 5] / 2)
    return (top - bottom).clamp(min=0)


def _volume(boxes: torch.Tensor) -> torch.Tensor:
    return boxes[..., 3] * boxes[..., 4] * boxes[..., 5]


def paired_iou_3d(a: torch.Tensor, b: torch.Tensor, oriented: bool = True) -> torch.Tensor:
    """IoU of box a[i] with b[i]: (P, 7), (P, 7) -> (P,), computed in float64."""
    a, b = a.double(), b.double()
    if a.shape[0] == 0:
        return a.new_zeros(0)
    if oriented:
        area = convex_intersection_area(bev_corners(a), bev_corners(b))  # (P,)
    else:  # axis-aligned fast path (headings ignored)
        lo = torch.maximum(a[:, :2] - a[:, 3:5] / 2, b[:, :2] - b[:, 3:5] / 2)
        hi = torch.minimum(a[:, :2] + a[:, 3:5] / 2, b[:, :2] + b[:, 3:5] / 2)
        area = (hi - lo).clamp(min=0).prod(-1)
    inter = area * _z_overlap(a, b)
    union = _volume(a) + _volume(b) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def iou_3d(a: torch.Tensor, b: torch.Tensor, oriented: bool = True, chunk: int = 65536) -> torch.Tensor:
    """All-pairs IoU: (N, 7), (M, 7) -> (N, M) float64. ``oriented=False`` ignores headings."""
    n, m = a.shape[0], b.shape[0]
    out = a.new_zeros((n, m), dtype=torch.float64)
    if n == 0 or m == 0:
        return out
    ai = torch.arange(n, device=a.device).repeat_interleave(m)
    bi = torch.arange(m, device=a.device).repeat(n)
    # boxes far apart in BEV cannot overlap: skip the clipping for them
    reach = (a[:, 3:5].double().norm(dim=1)[:, None] + b[:, 3:5].double().norm(dim=1)[None, :]) / 2
    near = (torch.cdist(a[:, :2].double(), b[:, :2].double()) <= reach).flatten()
    flat = out.flatten()
    ai, bi, pos = ai[near], bi[near], near.nonzero().squeeze(1)
    for s in range(0, len(pos), chunk):
        sl = slice(s, s + chunk)
        flat[pos[sl]] = paired_iou_3d(a[ai[sl]], b[bi[sl]], oriented)
    return flat.view(n, m)
