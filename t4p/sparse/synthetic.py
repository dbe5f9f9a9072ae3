"""Procedural point clouds of rooms (floor, ceiling, walls, boxes) for tests and benchmarks."""

from __future__ import annotations

import numpy as np

from t4p.sparse.voxelize import voxelize


def sample_rectangle(rng, origin, u, v, density: float) -> np.ndarray:
    """Uniform points on the parallelogram origin + a*u + b*v, a, b in [0, 1] -> (n, 3)."""
    area = float(np.linalg.norm(np.cross(u, v)))
    n = max(1, int(area * density))
    ab = rng.random((n, 2))
    return origin + ab[:, :1] * u + ab[:, 1:] * v


def sample_box(rng, lo, hi, density: float) -> np.ndarray:
    """Points on the five visible faces (no bottom) of an axis-aligned box -> (n, 3)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    dx, dy, dz = np.diag(hi - lo)
    faces = [
        (np.array([lo[0], lo[1], hi[2]]), dx, dy),  # top
        (lo, dx, dz),
        (lo + dy, dx, dz),
        (lo, dy, dz),
        (lo + dx, dy, dz),
    ]
    return np.concatenate([sample_rectangle(rng, o, u, v, density) for o, u, v in faces])


def room_points(size=(8.0, 6.0, 3.0), n_boxes: int = 12, density: float = 1600.0, seed: int = 0):
    """An indoor room: floor, ceiling, four walls and `n_boxes` furniture boxes -> (N, 3) metres."""
    rng = np.random.default_rng(seed)
    sx, sy, sz = size
    ex, ey, ez = np.eye(3) * np.array(size)
    parts = [
        sample_rectangle(rng, np.zeros(3), ex, ey, density),  # floor
        sample_rectangle(rng, ez, ex, ey, density),  # ceiling
        sample_rectangle(rng, np.zeros(3), ex, ez, density),
        sample_rectangle(rng, ey, ex, ez, density),
        sample_rectangle(rng, np.zeros(3), ey, ez, density),
        sample_rectangle(rng, ex, ey, ez, density),
    ]
    for _ in range(n_boxes):
        extent = rng.uniform([0.3, 0.3, 0.4], [1.6, 1.0, 1.2])
        lo = rng.uniform([0.1, 0.1, 0.0], [sx - extent[0] - 0.1, sy - extent[1] - 0.1, 0.0])
        parts.append(sample_box(rng, lo, lo + extent, density))
    xyz = np.concatenate(parts)
    return xyz + rng.normal(scale=0.002, size=xyz.shape)


def room_voxels(voxel_size: float = 0.05, batch: int = 1, seed: int = 0, **kwargs):
    """Voxelised synthetic rooms -> coords int32 (M, 4) = (batch, x, y, z), colours float32 (M, 3)."""
    coords, colours = [], []
    for b in range(batch):
        xyz = room_points(seed=seed + b, **kwargs)
        vox = voxelize(xyz, voxel_size)
        batch_col = np.full((len(vox.coords), 1), b, dtype=np.int32)
        coords.append(np.concatenate([batch_col, vox.coords], 1))
        rgb = np.random.default_rng(seed + b).random((len(vox.coords), 3)) - 0.5
        colours.append(rgb.astype(np.float32))
    return np.concatenate(coords), np.concatenate(colours)


def frame_points(size=(2.5, 2.0, 1.6), n_boxes: int = 1, density: float = 6400.0, seed: int = 0):
    """A single RGB-D-frame-like partial view: floor, two walls and a box -> (N, 3) metres."""
    rng = np.random.default_rng(seed)
    ex, ey, ez = np.eye(3) * np.array(size)
    parts = [
        sample_rectangle(rng, np.zeros(3), ex, ey, density),  # floor
        sample_rectangle(rng, ey, ex, ez, density),  # back wall
        sample_rectangle(rng, np.zeros(3), ey, ez, density),  # side wall
    ]
    for _ in range(n_boxes):
        extent = rng.uniform([0.4, 0.4, 0.4], [0.9, 0.7, 0.8])
        lo = np.array([rng.uniform(0.3, size[0] - extent[0] - 0.1), rng.uniform(0.1, 0.6), 0.0])
        parts.append(sample_box(rng, lo, lo + extent, density))
    xyz = np.concatenate(parts)
    return xyz + rng.normal(scale=0.001, size=xyz.shape)
