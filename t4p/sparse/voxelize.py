"""Voxelisation of point clouds in numpy (no torch, no MinkowskiEngine).

`voxelize(xyz, voxel_size, labels)` quantises points to integer voxel coordinates
`floor(xyz / voxel_size)`, keeps one row per occupied voxel, and returns the maps between
points and voxels plus the label mode of each voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT32_MIN = np.iinfo(np.int32).min
INT32_MAX = np.iinfo(np.int32).max


@dataclass
class Voxelized:
    """Result of `voxelize`.

    coords: int32 (M, 3) voxel coordinates floor(xyz / voxel_size), sorted lexicographically (x, y, z).
    point2voxel: int64 (N,) row of each point's voxel.
    voxel2point: int64 (M,) a representative point per voxel (the first point, by index, in it).
    labels: int64 (M,) most frequent non-ignored point label per voxel (ties -> smallest label;
        `ignore_label` when every point of the voxel is ignored), or None without labels.
    counts: int64 (M,) number of points per voxel.
    """

    coords: np.ndarray
    point2voxel: np.ndarray
    voxel2point: np.ndarray
    labels: np.ndarray | None
    counts: np.ndarray


def check_points(xyz: np.ndarray, name: str = "xyz") -> np.ndarray:
    """Validate an (N, 3) float array of points; raise ValueError naming the problem."""
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (N, 3), got {xyz.shape}")
    if xyz.shape[0] == 0:
        raise ValueError(f"{name}: empty point cloud (0 points)")
    if not np.issubdtype(xyz.dtype, np.number):
        raise ValueError(f"{name}: expected a numeric array, got dtype {xyz.dtype}")
    finite = np.isfinite(xyz).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name}: {int((~finite).sum())} points have NaN/inf coordinates (first: row {bad})")
    return xyz


def pack_rows(coords: np.ndarray) -> np.ndarray:
    """Pack int64 (M, 3) coordinates into int64 keys that sort like the rows (lexicographically)."""
    low = coords.min(axis=0)
    span = coords.max(axis=0) - low + 1  # (3,)
    if float(span[0]) * float(span[1]) * float(span[2]) >= 2.0**62:
        raise ValueError(f"coordinate span {span.tolist()} too large to pack into 64-bit keys")
    shifted = coords - low
    return (shifted[:, 0] * span[1] + shifted[:, 1]) * span[2] + shifted[:, 2]


def voxelize(
    xyz: np.ndarray,
    voxel_size: float,
    labels: np.ndarray | None = None,
    ignore_label: int = -100,
) -> Voxelized:
    """Quantise `xyz` (N, 3) to voxels of edge `voxel_size` (same units as xyz)."""
    xyz = check_points(xyz)
    if not (np.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"voxel_size: expected a positive number, got {voxel_size}")
    grid = np.floor(xyz.astype(np.float64) / voxel_size)  # (N, 3)
    if grid.min() < INT32_MIN or grid.max() > INT32_MAX:
        raise ValueError(
            f"xyz / voxel_size: voxel coordinates beyond int32 range (min {grid.min():.3g}, "
            f"max {grid.max():.3g}); check the units of xyz and voxel_size"
        )
    grid = grid.astype(np.int64)
    keys = pack_rows(grid)  # (N,)
    _, first, point2voxel, counts = np.unique(
        keys, return_index=True, return_inverse=True, return_counts=True
    )
    point2voxel = point2voxel.reshape(-1).astype(np.int64)
    voxel2point = first.astype(np.int64)  # np.unique returns the first occurrence
    coords = grid[voxel2point].astype(np.int32)  # (M, 3)
    voxel_labels = None
    if labels is not None:
        voxel_labels = label_mode(point2voxel, labels, len(voxel2point), ignore_label, len(xyz))
    return Voxelized(coords, point2voxel, voxel2point, voxel_labels, counts.astype(np.int64))


def label_mode(
    point2voxel: np.ndarray, labels: np.ndarray, n_voxels: int, ignore_label: int, n_points: int
) -> np.ndarray:
    """Most frequent non-ignored label per voxel (ties -> smallest label), int64 (M,)."""
    labels = np.asarray(labels)
    if labels.shape != (n_points,):
        raise ValueError(f"labels: expected shape ({n_points},) to match xyz, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected an integer array, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    out = np.full(n_voxels, ignore_label, dtype=np.int64)
    keep = labels != ignore_label
    if not keep.any():
        return out
    vox, lab = point2voxel[keep], labels[keep]
    pairs, pair_counts = np.unique(np.stack([vox, lab], axis=1), axis=0, return_counts=True)  # (P, 2)
    # order: voxel ascending, count descending, label ascending; the first row per voxel wins
    order = np.lexsort((pairs[:, 1], -pair_counts, pairs[:, 0]))
    pairs = pairs[order]
    is_first = np.ones(len(pairs), dtype=bool)
    is_first[1:] = pairs[1:, 0] != pairs[:-1, 0]
    out[pairs[is_first, 0]] = pairs[is_first, 1]
    return out
