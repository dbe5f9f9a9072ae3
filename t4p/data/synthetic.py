"""Procedural indoor scenes written in the real on-disk formats, so the demo and CI run the real readers.

A room is a set of parametric solids (oriented boxes and vertical cylinders), each with an
S3DIS class, an instance id and a colour model: a per-class base colour, a per-instance
shift, a texture (a sinusoid of the world position, so it is consistent across views) and
per-sample noise. Colours are informative but overlap between classes (wall/ceiling/board,
table/bookcase/door), so a model needs geometry too. From one room t4p writes:

* ScanNet exported frames (``scannet/scans/<scene>/color|depth|pose|intrinsic``), ray cast
  along a camera trajectory (vectorised slab/cylinder intersection in numpy);
* the S3DIS raw layout (``s3dis/Area_N/<room>/Annotations/<class>_<k>.txt`` + ``<room>.txt``)
  from points sampled on the visible surfaces;
* the ScanNet VoteNet export (``scannet_votenet/<scene>_{vert,sem_label,ins_label,bbox}.npy``,
  NYU40 ids) and SUN RGB-D-like VoteNet files (``sunrgbd/<id>_pc.npz``, ``<id>_bbox.npy``).

Rooms are assigned to S3DIS areas in the order 1, 5, 2, 3, 4, 6 (so Area 5, the test area,
exists from two rooms on); ScanNet/SUN RGB-D split files put the Area 5 rooms in ``val``.
Everything is deterministic per seed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from t4p.data.classes import S3DIS13, SUNRGBD10
from t4p.io import atomic_dir
from t4p.sparse.voxelize import voxelize

log = logging.getLogger(__name__)

AREA_ORDER = (1, 5, 2, 3, 4, 6)
ROOM_KINDS = ("office", "conferenceRoom", "lounge", "pantry")
GENERATOR_VERSION = 2  # bump when the output changes, so caches keyed by settings are rebuilt

# class -> (base colour, texture amplitude, texture period in m)
STYLE = {
    "ceiling": ((205, 205, 198), 10, 0.6),
    "floor": ((125, 100, 78), 25, 0.5),
    "wall": ((190, 186, 172), 12, 1.3),
    "beam": ((170, 168, 160), 10, 0.4),
    "column": ((160, 150, 140), 15, 0.35),
    "window": ((120, 160, 200), 30, 0.3),
    "door": ((140, 95, 60), 20, 0.25),
    "table": ((150, 110, 70), 18, 0.2),
    "chair": ((60, 70, 120), 15, 0.15),
    "sofa": ((130, 50, 55), 15, 0.2),
    "bookcase": ((115, 85, 55), 35, 0.3),
    "board": ((225, 225, 220), 8, 0.5),
    "clutter": ((110, 140, 90), 45, 0.1),
}
NYU40 = {
    "ceiling": 22,
    "floor": 2,
    "wall": 1,
    "beam": 38,
    "column": 38,
    "window": 9,
    "door": 8,
    "table": 7,
    "chair": 5,
    "sofa": 6,
    "bookcase": 10,
    "board": 30,
    "clutter": 40,
}
SUNRGBD_NAME = {"table": "table", "chair": "chair", "sofa": "sofa", "bookcase": "bookshelf"}
INSTANCE_NOISE = 18.0  # std of the per-instance colour shift
SAMPLE_NOISE = 14.0  # std of the per-point / per-pixel colour noise


@dataclass
class Solid:
    kind: str  # "box" | "cyl"
    centre: np.ndarray  # (3,)
    half: np.ndarray  # (3,) box half sizes in its own frame; cylinder: (r, r, half height)
    yaw: float
    cls: int  # S3DIS13 index
    inst: int
    color: np.ndarray  # (3,) base colour with the instance shift
    tex_amp: float
    tex_period: float
    tex_dir: np.ndarray  # (3,) unit


@dataclass
class Room:
    size: np.ndarray  # (3,) interior W, D, H
    solids: list[Solid] = field(default_factory=list)
    objects: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # (cls, inst, box (7,))


# --------------------------------------------------------------------------- scene layout


class _Builder:
    def __init__(self, rng: np.random.Generator, size: np.ndarray):
        self.rng = rng
        self.room = Room(size)
        self.next_inst = 0

    def instance(self, cls_name: str) -> tuple[int, np.ndarray, float, float, np.ndarray]:
        base, amp, period = STYLE[cls_name]
        color = np.asarray(base, float) + self.rng.normal(0, INSTANCE_NOISE, 3)
        d = self.rng.normal(size=3)
        self.next_inst += 1
        return self.next_inst - 1, color, amp * self.rng.uniform(0.6, 1.4), period, d / np.linalg.norm(d)

    def add(self, cls_name, kind, centre, half, yaw=0.0, style=None) -> tuple:
        style = style or self.instance(cls_name)
        inst, color, amp, period, tdir = style
        self.room.solids.append(
            Solid(
                kind,
                np.asarray(centre, float),
                np.asarray(half, float),
                float(yaw),
                S3DIS13.index(cls_name),
                inst,
                color,
                amp,
                period,
                tdir,
            )
        )
        return style


def _rot(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _place(b: _Builder, cls_name: str, parts, centre_xy, yaw, z0=0.0):
    """Add a piece of furniture made of boxes ``parts`` = [(local centre, half)] as one instance."""
    style = b.instance(cls_name)
    r = _rot(yaw)
    pts = []
    for c, h in parts:
        c = np.asarray(c, float)
        wc = np.array([centre_xy[0], centre_xy[1], z0]) + r @ c
        b.add(cls_name, "box", wc, h, yaw, style)
        pts += [c - h, c + h]
    lo, hi = np.min(pts, 0), np.max(pts, 0)
    mid = np.array([centre_xy[0], centre_xy[1], z0]) + r @ ((lo + hi) / 2)
    b.room.objects.append((S3DIS13.index(cls_name), style[0], np.concatenate([mid, hi - lo, [yaw]])))


def _table(b, xy, yaw):
    lx, ly, hz = b.rng.uniform(0.6, 0.9), b.rng.uniform(0.35, 0.45), b.rng.uniform(0.70, 0.76)
    parts = [((0, 0, hz - 0.02), (lx, ly, 0.02))]
    parts += [
        ((sx * (lx - 0.05), sy * (ly - 0.05), (hz - 0.04) / 2), (0.025, 0.025, (hz - 0.04) / 2))
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]
    _place(b, "table", parts, xy, yaw)
    return hz, lx, ly


def _chair(b, xy, yaw):
    s, hz = 0.22, b.rng.uniform(0.42, 0.48)
    parts: list[tuple[tuple[float, float, float], tuple[float, float, float]]]
    parts = [((0, 0, hz), (s, s, 0.03)), ((0, -s + 0.03, hz + 0.25), (s, 0.03, 0.22))]
    parts += [
        ((sx * (s - 0.03), sy * (s - 0.03), hz / 2), (0.02, 0.02, hz / 2)) for sx in (-1, 1) for sy in (-1, 1)
    ]
    _place(b, "chair", parts, xy, yaw)


def _sofa(b, xy, yaw):
    lx = b.rng.uniform(0.8, 1.1)
    parts = [
        ((0, 0, 0.2), (lx, 0.4, 0.2)),
        ((0, -0.32, 0.6), (lx, 0.08, 0.2)),
        ((-lx + 0.08, 0.0, 0.5), (0.08, 0.4, 0.1)),
        ((lx - 0.08, 0.0, 0.5), (0.08, 0.4, 0.1)),
    ]
    _place(b, "sofa", parts, xy, yaw)


def _bookcase(b, xy, yaw):
    lx, hz = b.rng.uniform(0.4, 0.6), b.rng.uniform(0.9, 1.05)
    _place(b, "bookcase", [((0, 0, hz), (lx, 0.18, hz))], xy, yaw)


def _free(xy, r, taken, size, cam_r) -> bool:
    centre = size[:2] / 2
    if np.linalg.norm((xy - centre) / (size[:2] / 2)) < cam_r + 0.25:
        return False
    if np.any(xy < r + 0.05) or np.any(xy > size[:2] - r - 0.05):
        return False
    return all(np.linalg.norm(xy - q) > r + rq for q, rq in taken)


def _spot(b, r, taken, cam_r, tries=60):
    size = b.room.size
    for _ in range(tries):
        xy = b.rng.uniform(r, size[:2] - r)
        if _free(xy, r, taken, size, cam_r):
            taken.append((xy, r))
            return xy
    return None


def _wall_item(b, cls_name, wall, width, z0, height, protrude=0.03):
    """A thin box on the inside of wall ``wall`` (0: y=0, 1: x=W, 2: y=D, 3: x=0).

    It reaches 2 cm into the wall so that the wall surface behind it counts as hidden.
    """
    W, D, _ = b.room.size
    along = W if wall in (0, 2) else D
    pos = b.rng.uniform(width / 2 + 0.3, max(width / 2 + 0.31, along - width / 2 - 0.3))
    zc = z0 + height / 2
    off, th = (protrude - 0.02) / 2, (protrude + 0.02) / 2  # box spans [-2 cm, protrude] from the wall
    if wall == 0:
        c, h = (pos, off, zc), (width / 2, th, height / 2)
    elif wall == 2:
        c, h = (pos, D - off, zc), (width / 2, th, height / 2)
    elif wall == 1:
        c, h = (W - off, pos, zc), (th, width / 2, height / 2)
    else:
        c, h = (off, pos, zc), (th, width / 2, height / 2)
    b.add(cls_name, "box", c, h)
    b.room.objects.append(
        (S3DIS13.index(cls_name), b.next_inst - 1, np.concatenate([c, 2 * np.array(h), [0.0]]))
    )


def make_room(rng: np.random.Generator, cam_r: float = 0.3) -> Room:
    """A random room: structure, wall items, furniture and clutter."""
    size = np.array([rng.uniform(4.0, 6.5), rng.uniform(4.0, 6.5), rng.uniform(2.6, 3.1)])
    W, D, H = size
    b = _Builder(rng, size)
    t = 0.1
    b.add("floor", "box", (W / 2, D / 2, -t), (W / 2 + t, D / 2 + t, t))
    b.add("ceiling", "box", (W / 2, D / 2, H + t), (W / 2 + t, D / 2 + t, t))
    hx, hy, hz = (W / 2 + 2 * t, t, H / 2 + t), (t, D / 2 + 2 * t, H / 2 + t), H / 2
    for c, h in (
        ((W / 2, -t, hz), hx),
        ((W / 2, D + t, hz), hx),
        ((-t, D / 2, hz), hy),
        ((W + t, D / 2, hz), hy),
    ):
        b.add("wall", "box", c, h)
    for _ in range(rng.integers(1, 3)):  # beams under the ceiling
        w = rng.uniform(0.25, 0.4)
        if rng.random() < 0.5:
            b.add("beam", "box", (rng.uniform(0.8, W - 0.8), D / 2, H - w / 2), (w / 2, D / 2, w / 2))
        else:
            b.add("beam", "box", (W / 2, rng.uniform(0.8, D - 0.8), H - w / 2), (W / 2, w / 2, w / 2))
    for corner in rng.permutation(4)[: rng.integers(1, 3)]:  # columns in corners
        s = rng.uniform(0.2, 0.3)
        x = s if corner in (0, 3) else W - s
        y = s if corner in (0, 1) else D - s
        b.add("column", "box", (x, y, H / 2), (s, s, H / 2))
    walls = rng.permutation(4)
    _wall_item(b, "door", walls[0], rng.uniform(0.85, 1.0), 0.0, rng.uniform(2.0, 2.2))
    for w in walls[1 : 1 + rng.integers(1, 3)]:
        _wall_item(b, "window", w, rng.uniform(1.0, 1.6), rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.3))
    if rng.random() < 0.8:
        _wall_item(b, "board", walls[3], rng.uniform(1.2, 2.0), rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.2))

    taken: list = []
    for _ in range(rng.integers(1, 3)):
        xy = _spot(b, 0.9, taken, cam_r)
        if xy is None:
            continue
        yaw = rng.uniform(-np.pi, np.pi)
        hz, lx, ly = _table(b, xy, yaw)
        for _ in range(rng.integers(1, 4)):  # clutter on the table
            off = _rot(yaw) @ np.array(
                [rng.uniform(-lx + 0.1, lx - 0.1), rng.uniform(-ly + 0.1, ly - 0.1), 0]
            )
            _clutter(b, xy + off[:2], hz)
    for _ in range(rng.integers(2, 5)):
        xy = _spot(b, 0.35, taken, cam_r)
        if xy is not None:
            _chair(b, xy, rng.uniform(-np.pi, np.pi))
    if rng.random() < 0.7:
        xy = _spot(b, 1.1, taken, cam_r)
        if xy is not None:
            _sofa(b, xy, rng.uniform(-np.pi, np.pi))
    for _ in range(rng.integers(1, 3)):
        xy = _spot(b, 0.65, taken, cam_r)
        if xy is not None:
            _bookcase(b, xy, rng.uniform(-np.pi, np.pi))
    for _ in range(rng.integers(2, 5)):  # clutter on the floor
        xy = _spot(b, 0.25, taken, cam_r)
        if xy is not None:
            _clutter(b, xy, 0.0)
    return b.room


def _clutter(b: _Builder, xy, z0):
    rng = b.rng
    h = rng.uniform(0.05, 0.2)
    if rng.random() < 0.5:
        r = rng.uniform(0.04, 0.12)
        b.add("clutter", "cyl", (xy[0], xy[1], z0 + h), (r, r, h))
        box = np.array([xy[0], xy[1], z0 + h, 2 * r, 2 * r, 2 * h, 0.0])
    else:
        half = (rng.uniform(0.05, 0.15), rng.uniform(0.05, 0.15), h)
        yaw = rng.uniform(-np.pi, np.pi)
        b.add("clutter", "box", (xy[0], xy[1], z0 + h), half, yaw)
        box = np.array([xy[0], xy[1], z0 + h, 2 * half[0], 2 * half[1], 2 * h, yaw])
    b.room.objects.append((S3DIS13.index("clutter"), b.next_inst - 1, box))


# --------------------------------------------------------------------------- colour


def shade(solids: list[Solid], idx: np.ndarray, xyz: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour (N, 3) uint8 of points ``xyz`` on solids ``idx``: base + texture + noise."""
    base = np.stack([s.color for s in solids])[idx]  # (N, 3)
    amp = np.array([s.tex_amp for s in solids])[idx]
    period = np.array([s.tex_period for s in solids])[idx]
    tdir = np.stack([s.tex_dir for s in solids])[idx]
    tex = amp * np.sin(2 * np.pi * (xyz * tdir).sum(1) / period)  # (N,)
    rgb = base + tex[:, None] + rng.normal(0, SAMPLE_NOISE, size=base.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- ray casting


def _corners(s: Solid) -> np.ndarray:
    """The 8 corners (8, 3) of a solid's bounding box in world coordinates."""
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    return (signs * s.half) @ _rot(s.yaw).T + s.centre


_EDGES = np.array([(i, j) for i in range(8) for j in range(i + 1, 8) if bin(i ^ j).count("1") == 1])


def _hit_box(s: Solid, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Entry distance (R,) of rays o + t d (d: (R, 3)) into an oriented box (inf = miss), slab method."""
    r = _rot(s.yaw)
    lo = r.T @ (o - s.centre)  # (3,)
    ld = d @ r  # (R, 3) = (R^T d^T)^T
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / ld
        t1, t2 = (-s.half - lo) * inv, (s.half - lo) * inv
    tmin = np.fmax(
        np.fmax(np.fmin(t1[:, 0], t2[:, 0]), np.fmin(t1[:, 1], t2[:, 1])), np.fmin(t1[:, 2], t2[:, 2])
    )
    tmax = np.fmin(
        np.fmin(np.fmax(t1[:, 0], t2[:, 0]), np.fmax(t1[:, 1], t2[:, 1])), np.fmax(t1[:, 2], t2[:, 2])
    )
    return np.where((tmax >= tmin) & (tmin > 1e-6), tmin, np.inf)


def _hit_cylinder(s: Solid, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Entry distance (R,) into a vertical capped cylinder (side or top cap; inf = miss)."""
    lo = o - s.centre
    r, hz = s.half[0], s.half[2]
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    bq = 2 * (lo[0] * d[:, 0] + lo[1] * d[:, 1])
    cq = lo[0] ** 2 + lo[1] ** 2 - r**2
    disc = bq**2 - 4 * a * cq
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-bq - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        z_side = lo[2] + t_side * d[:, 2]
        t_side = np.where((disc >= 0) & (t_side > 1e-6) & (np.abs(z_side) <= hz), t_side, np.inf)
        t_cap = (hz - lo[2]) / d[:, 2]
        px, py = lo[0] + t_cap * d[:, 0], lo[1] + t_cap * d[:, 1]
        t_cap = np.where((t_cap > 1e-6) & (px**2 + py**2 <= r**2), t_cap, np.inf)
    return np.minimum(t_side, t_cap)


def _screen_rect(s: Solid, world_to_cam: np.ndarray, K: np.ndarray, hw) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (v0, v1, u0, u1) where the solid can appear (its box clipped at the near plane)."""
    h, w = hw
    cam = _corners(s) @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]  # (8, 3)
    near = 0.05
    front = cam[:, 2] > near
    if not front.any():
        return None
    if not front.all():  # clip the box's 12 edges against the near plane
        a, b = _EDGES[:, 0], _EDGES[:, 1]
        cross = front[a] != front[b]
        ca, cb = cam[a[cross]], cam[b[cross]]
        f = (near - ca[:, 2]) / (cb[:, 2] - ca[:, 2])
        cam = np.concatenate([cam[front], ca + f[:, None] * (cb - ca)])
    u = K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]
    v = K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]
    u0, u1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())) + 1, w)
    v0, v1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())) + 1, h)
    return (v0, v1, u0, u1) if u0 < u1 and v0 < v1 else None


SHELL = 6  # the first solids of a room: floor, ceiling, walls at y=0, y=D, x=0, x=W


def _cast_shell(size: np.ndarray, o: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exit distance (H, W) of rays from inside the room box, and the shell solid they hit."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(dirs > 0, (size - o) / dirs, -o / dirs)  # (H, W, 3) per axis
    t = np.where(np.isfinite(t) & (t > 0), t, np.inf)
    axis = np.argmin(t, axis=-1)  # (H, W)
    positive = np.take_along_axis(dirs, axis[..., None], -1)[..., 0] > 0
    solid_of = np.array([[4, 5], [2, 3], [0, 1]])  # [axis][positive]: x-/x+ walls, y-/y+ walls, floor/ceiling
    return np.take_along_axis(t, axis[..., None], -1)[..., 0], solid_of[axis, positive.astype(int)]


def ray_cast(room: Room, pose: np.ndarray, K: np.ndarray, hw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: depth t (H, W) (camera z), index of the solid hit (H, W) (-1 = none), ray dirs (H, W, 3).

    Each solid is intersected only with the rays of its screen rectangle.
    """
    h, w = hw
    v, u = np.mgrid[0:h, 0:w]
    cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones((h, w))], -1)
    dirs = (cam @ pose[:3, :3].T).astype(np.float32)  # (H, W, 3); camera z = 1, so t is the depth
    origin = pose[:3, 3]
    world_to_cam = np.linalg.inv(pose)
    t_best, which = _cast_shell(room.size, origin, dirs)
    for i, s in enumerate(room.solids):
        if i < SHELL:
            continue
        rect = _screen_rect(s, world_to_cam, K, hw)
        if rect is None:
            continue
        v0, v1, u0, u1 = rect
        d = dirs[v0:v1, u0:u1].reshape(-1, 3)
        t = (_hit_box if s.kind == "box" else _hit_cylinder)(s, origin, d).reshape(v1 - v0, u1 - u0)
        tb, wb = t_best[v0:v1, u0:u1], which[v0:v1, u0:u1]  # views
        closer = t < tb
        tb[closer] = t[closer]
        wb[closer] = i
    return t_best, which, dirs


def look_at(position: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Camera-to-world 4x4 with OpenCV axes (x right, y down, z forward), world z up."""
    f = forward / np.linalg.norm(forward)
    right = np.cross(f, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(f, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, f], axis=1)
    pose[:3, 3] = position
    return pose


def intrinsics(h: int, w: int) -> np.ndarray:
    f = 0.9 * w  # ~58 degrees horizontal field of view
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])


def trajectory(room: Room, n: int, rng: np.random.Generator, cam_r: float) -> list[np.ndarray]:
    """Poses on an ellipse around the room centre, looking across the room and slightly down."""
    W, D, _ = room.size
    yaw0 = rng.uniform(0, 2 * np.pi)
    poses = []
    for i in range(n):
        a = yaw0 + i * min(0.8 * 2 * np.pi / max(n, 1), 0.45)  # consecutive views overlap
        pos = np.array(
            [W / 2 + cam_r * W / 2 * np.cos(a), D / 2 + cam_r * D / 2 * np.sin(a), rng.uniform(1.3, 1.6)]
        )
        look = a + np.pi + rng.uniform(-0.4, 0.4)
        fwd = np.array([np.cos(look), np.sin(look), -rng.uniform(0.2, 0.45)])
        poses.append(look_at(pos, fwd))
    return poses


def render(room: Room, pose: np.ndarray, K: np.ndarray, hw: tuple[int, int], rng: np.random.Generator):
    """Ray cast one RGB-D frame: colour (H, W, 3) uint8 and depth (H, W) uint16 millimetres."""
    h, w = hw
    t, which, dirs = ray_cast(room, pose, K, hw)
    t, which, dirs = t.reshape(-1), which.reshape(-1), dirs.reshape(-1, 3)
    hit = which >= 0
    xyz = pose[:3, 3] + t[hit, None] * dirs[hit]
    color = np.zeros((h * w, 3), np.uint8)
    color[hit] = shade(room.solids, which[hit], xyz, rng)
    depth = np.zeros(h * w)
    depth[hit] = t[hit] + rng.normal(0, 0.002, hit.sum())  # 2 mm sensor noise
    depth[rng.random(h * w) < 0.01] = 0  # dropouts
    depth_mm = np.clip(np.rint(depth * 1000), 0, 65534).astype(np.uint16)
    return color.reshape(h, w, 3), depth_mm.reshape(h, w)


# --------------------------------------------------------------------------- surface sampling


def _inside(solid: Solid, p: np.ndarray, margin: float = 1e-3) -> np.ndarray:
    local = (p - solid.centre) @ _rot(solid.yaw)  # inverse rotation: p_local = R^T (p - c)
    if solid.kind == "cyl":
        r, hz = solid.half[0] - margin, solid.half[2] - margin
        return (local[:, 0] ** 2 + local[:, 1] ** 2 < r**2) & (np.abs(local[:, 2]) < hz)
    return np.all(np.abs(local) < solid.half - margin, axis=1)


def _sample_solid(s: Solid, density: float, rng: np.random.Generator) -> np.ndarray:
    """Points (n, 3) on the surface of one solid, about ``density`` per m^2."""
    h = s.half
    if s.kind == "cyl":
        r, hz = h[0], h[2]
        n_side, n_cap = rng.poisson(density * 2 * np.pi * r * 2 * hz), rng.poisson(density * np.pi * r * r)
        a = rng.uniform(0, 2 * np.pi, n_side)
        side = np.stack([r * np.cos(a), r * np.sin(a), rng.uniform(-hz, hz, n_side)], 1)
        rr, a2 = r * np.sqrt(rng.random(n_cap)), rng.uniform(0, 2 * np.pi, n_cap)
        cap = np.stack([rr * np.cos(a2), rr * np.sin(a2), np.full(n_cap, hz)], 1)
        local = np.concatenate([side, cap])
    else:
        faces = []
        for axis in range(3):
            o1, o2 = [a for a in range(3) if a != axis]
            area = 4 * h[o1] * h[o2]
            for sign in (-1, 1):
                n = rng.poisson(density * area)
                f = np.empty((n, 3))
                f[:, axis] = sign * h[axis]
                f[:, o1] = rng.uniform(-h[o1], h[o1], n)
                f[:, o2] = rng.uniform(-h[o2], h[o2], n)
                faces.append(f)
        local = np.concatenate(faces)
    return local @ _rot(s.yaw).T + s.centre


def sample_points(room: Room, density: float, rng: np.random.Generator):
    """Visible surface points of the room: xyz (N, 3), solid index (N,) (hidden/outside points removed)."""
    pts, owners = [], []
    for i, s in enumerate(room.solids):
        p = _sample_solid(s, density, rng)
        p_in = np.all((p > -1e-3) & (p < room.size + 1e-3), axis=1)  # drop outer faces of the shell
        pts.append(p[p_in])
        owners.append(np.full(int(p_in.sum()), i))
    xyz, idx = np.concatenate(pts), np.concatenate(owners)
    keep = np.ones(len(xyz), dtype=bool)
    for i, s in enumerate(room.solids):
        c = _corners(s)
        near = np.flatnonzero(np.all((xyz >= c.min(0)) & (xyz <= c.max(0)), axis=1) & (idx != i))
        keep[near[_inside(s, xyz[near])]] = False  # points hidden inside another solid
    return xyz[keep], idx[keep]


# --------------------------------------------------------------------------- in-memory scenes (tests, benchmarks)


def room_points(seed: int = 0, density: float = 300.0) -> np.ndarray:
    """The visible surface points of one random room (the S3DIS-room shape), (N, 3) metres."""
    rng = np.random.default_rng(seed)
    return sample_points(make_room(rng), density, rng)[0]


def frame_points(seed: int = 0, hw: tuple[int, int] = (240, 320)) -> np.ndarray:
    """The points one RGB-D frame of a random room sees (the pre-training frame's shape), (N, 3) metres."""
    rng = np.random.default_rng(seed)
    room = make_room(rng)
    pose = trajectory(room, 1, rng, cam_r=0.3)[0]
    t, which, dirs = ray_cast(room, pose, intrinsics(*hw), hw)  # (H, W), (H, W), (H, W, 3)
    hit = which >= 0
    return pose[:3, 3] + t[hit, None] * dirs[hit]  # (n_hit, 3)


def room_voxels(voxel_size: float, batch: int = 1, seed: int = 0, density: float = 300.0):
    """``batch`` voxelised random rooms -> coords int32 (M, 4) = (batch, x, y, z), colours float32 (M, 3)."""
    coords, colours = [], []
    for b in range(batch):
        vox = voxelize(room_points(seed + b, density), voxel_size)
        batch_col = np.full((len(vox.coords), 1), b, dtype=np.int32)
        coords.append(np.concatenate([batch_col, vox.coords], 1))
        colours.append((np.random.default_rng(seed + b).random((len(vox.coords), 3)) - 0.5).astype(np.float32))
    return np.concatenate(coords), np.concatenate(colours)


# --------------------------------------------------------------------------- writers


def _jpeg(color: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(color).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _write_mat(path: Path, m: np.ndarray) -> None:
    path.write_text("\n".join(" ".join(f"{x:.9g}" for x in row) for row in m) + "\n")


def write_scannet_frames(out: Path, scene: str, room: Room, n_frames: int, hw, rng) -> None:
    d = out / "scans" / scene
    for sub in ("color", "depth", "pose", "intrinsic"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    K = intrinsics(*hw)
    K4 = np.eye(4)
    K4[:3, :3] = K
    _write_mat(d / "intrinsic" / "intrinsic_color.txt", K4)
    _write_mat(d / "intrinsic" / "intrinsic_depth.txt", K4)
    for i, pose in enumerate(trajectory(room, n_frames, rng, cam_r=0.3)):
        color, depth = render(room, pose, K, hw, rng)
        (d / "color" / f"{i}.jpg").write_bytes(_jpeg(color))
        Image.fromarray(depth).save(d / "depth" / f"{i}.png")
        _write_mat(d / "pose" / f"{i}.txt", pose)


def write_s3dis_room(out: Path, area: int, name: str, room: Room, xyz, idx, rgb) -> None:
    d = out / f"Area_{area}" / name
    (d / "Annotations").mkdir(parents=True, exist_ok=True)
    inst = np.array([s.inst for s in room.solids])[idx]
    cls = np.array([s.cls for s in room.solids])[idx]
    counters: dict[int, int] = {}
    rows = np.concatenate([xyz, rgb.astype(np.float64)], 1)
    texts = []
    for k in np.unique(inst):
        sel = inst == k
        c = int(cls[sel][0])
        counters[c] = counters.get(c, 0) + 1
        texts.append(_xyzrgb_text(rows[sel]))
        (d / "Annotations" / f"{S3DIS13.names[c]}_{counters[c]}.txt").write_text(texts[-1])
    (d / f"{name}.txt").write_text("".join(texts))


def _xyzrgb_text(rows: np.ndarray) -> str:
    """Lines 'x y z r g b' (3 decimals, integer colour) for (N, 6) rows, formatted in one C call."""
    return ("%.3f %.3f %.3f %d %d %d\n" * len(rows)) % tuple(rows.ravel().tolist())  # %d truncates floats


def write_votenet(out: Path, scene: str, room: Room, xyz, idx, rgb) -> None:
    """ScanNet VoteNet export (NYU40 ids, axis-aligned boxes from the instance points)."""
    out.mkdir(parents=True, exist_ok=True)
    cls = np.array([s.cls for s in room.solids])[idx]
    inst = np.array([s.inst for s in room.solids])[idx] + 1  # 0 = none in the export
    nyu = np.array([NYU40[S3DIS13.names[c]] for c in cls], dtype=np.int64)
    boxes = []
    for k in np.unique(inst):
        sel = inst == k
        lo, hi = xyz[sel].min(0), xyz[sel].max(0)
        boxes.append([*((lo + hi) / 2), *(hi - lo), nyu[sel][0]])
    np.save(out / f"{scene}_vert.npy", np.concatenate([xyz, rgb], 1).astype(np.float32))
    np.save(out / f"{scene}_sem_label.npy", nyu)
    np.save(out / f"{scene}_ins_label.npy", inst.astype(np.int64))
    np.save(out / f"{scene}_bbox.npy", np.asarray(boxes, dtype=np.float32).reshape(-1, 7))


def write_sunrgbd(out: Path, idx_name: str, room: Room, xyz, rgb) -> None:
    """SUN RGB-D-like VoteNet files: ``_pc.npz`` (rgb in [0, 1]) and ``_bbox.npy`` with half sizes."""
    out.mkdir(parents=True, exist_ok=True)
    boxes = []
    for cls, _inst, box in room.objects:
        name = SUNRGBD_NAME.get(S3DIS13.names[cls])
        if name is not None:
            # VoteNet's heading sign is the opposite of t4p's (its corners use rotz(-heading))
            boxes.append([*box[:3], *(box[3:6] / 2), -box[6], SUNRGBD10.index(name)])
    pc = np.concatenate([xyz, rgb / 255.0], 1).astype(np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, pc=pc)
    (out / f"{idx_name}_pc.npz").write_bytes(buf.getvalue())
    np.save(out / f"{idx_name}_bbox.npy", np.asarray(boxes, dtype=np.float32).reshape(-1, 8))


# --------------------------------------------------------------------------- entry points


@dataclass
class SynthSettings:
    scenes: int = 6
    seed: int = 0
    frames_per_scene: int = 8
    height: int = 240
    width: int = 320
    point_density: float = 300.0  # surface points per m^2

    def key(self) -> str:
        blob = json.dumps({**self.__dict__, "version": GENERATOR_VERSION}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def scene_names(n: int) -> list[str]:
    return [f"scene{i:04d}_00" for i in range(n)]


def room_name(i: int) -> tuple[int, str]:
    return AREA_ORDER[i % len(AREA_ORDER)], f"{ROOM_KINDS[i % len(ROOM_KINDS)]}_{i // len(AREA_ORDER) + 1}"


def generate(out: str | Path, settings: SynthSettings) -> Path:
    """Write ``settings.scenes`` rooms in every layout under ``out`` (which must not exist yet)."""
    out = Path(out)
    hw = (settings.height, settings.width)
    names = scene_names(settings.scenes)
    scenes: dict[str, dict[str, Any]] = {}
    meta = {"settings": settings.__dict__, "version": GENERATOR_VERSION, "scenes": scenes}
    for i in tqdm(range(settings.scenes), desc="synthetic rooms", unit="room", leave=False):
        rng = np.random.default_rng([settings.seed, i])
        room = make_room(rng)
        xyz, idx = sample_points(room, settings.point_density, rng)
        rgb = shade(room.solids, idx, xyz, rng)
        area, rname = room_name(i)
        write_scannet_frames(out / "scannet", names[i], room, settings.frames_per_scene, hw, rng)
        write_s3dis_room(out / "s3dis", area, rname, room, xyz, idx, rgb)
        write_votenet(out / "scannet_votenet", names[i], room, xyz, idx, rgb)
        write_sunrgbd(out / "sunrgbd", f"{i + 1:06d}", room, xyz, rgb)
        scenes[names[i]] = {
            "area": area,
            "room": rname,
            "sunrgbd_id": f"{i + 1:06d}",
            "points": len(xyz),
        }
    test = [n for n in names if scenes[n]["area"] == 5]
    train = [n for n in names if n not in test]
    for d in (out / "scannet", out / "scannet_votenet" / "meta_data"):
        d.mkdir(parents=True, exist_ok=True)
        (d / "scannetv2_train.txt").write_text("".join(n + "\n" for n in train))
        (d / "scannetv2_val.txt").write_text("".join(n + "\n" for n in test))
    sid = {n: scenes[n]["sunrgbd_id"] for n in names}
    (out / "sunrgbd" / "train_data_idx.txt").write_text("".join(sid[n] + "\n" for n in train))
    (out / "sunrgbd" / "val_data_idx.txt").write_text("".join(sid[n] + "\n" for n in test))
    (out / "synthetic.json").write_text(json.dumps(meta, indent=1))
    return out


def generate_atomic(out: str | Path, settings: SynthSettings) -> Path:
    """``generate`` into a temporary sibling folder, then rename it onto ``out`` (no half-written roots)."""
    out = Path(out)
    if (out / "synthetic.json").exists():
        return out
    with atomic_dir(out, lambda done: (done / "synthetic.json").exists()) as tmp:
        generate(tmp, settings)
    return out


def settings_from_config(cfg) -> SynthSettings:
    d = cfg.data
    return SynthSettings(
        d.synth_scenes,
        d.synth_seed,
        d.synth_frames_per_scene,
        d.image_height,
        d.image_width,
        d.synth_point_density,
    )


def ensure_synthetic(cfg) -> Path:
    """Generate the synthetic scenes for ``cfg`` once (cached by their settings) and return the root."""
    s = settings_from_config(cfg)
    base = Path(cfg.data.root) if cfg.data.root else Path(cfg.train.out_dir) / "synthetic"
    root = base / s.key()
    if not (root / "synthetic.json").exists():
        log.info("generating %d synthetic rooms (seed %d) under %s", s.scenes, s.seed, root)
        generate_atomic(root, s)
    return root
