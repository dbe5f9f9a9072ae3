"""Augmentations of PointContrast's S3DIS recipe: flip, rotation about z, scale, colour jitter.

All functions take a numpy ``Generator`` and return new arrays. Boxes (K, 8) = centre xyz,
size xyz, heading, class follow the points they describe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AugmentSpec:
    flip: bool = True
    rotate_z: bool = True
    scale_min: float = 0.9
    scale_max: float = 1.1
    color_jitter: float = 0.05  # std of additive colour noise as a fraction of 255


def rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def augment_points(
    xyz: np.ndarray,
    rgb: np.ndarray,
    spec: AugmentSpec,
    rng: np.random.Generator,
    boxes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(xyz (N, 3), rgb (N, 3) uint8, boxes (K, 8) or None) after random flip/rotate/scale/jitter."""
    xyz = xyz.astype(np.float64)
    boxes = None if boxes is None else boxes.astype(np.float64).copy()
    if spec.flip and rng.random() < 0.5:  # mirror x
        xyz = xyz * np.array([-1.0, 1.0, 1.0])
        if boxes is not None:
            boxes[:, 0] *= -1
            boxes[:, 6] = np.pi - boxes[:, 6]
    if spec.rotate_z:
        angle = rng.uniform(-np.pi, np.pi)
        rot = rotation_z(angle)
        xyz = xyz @ rot.T
        if boxes is not None:
            boxes[:, :3] = boxes[:, :3] @ rot.T
            boxes[:, 6] += angle
    scale = rng.uniform(spec.scale_min, spec.scale_max)
    xyz = xyz * scale
    if boxes is not None:
        boxes[:, :6] *= scale
        boxes[:, 6] = (boxes[:, 6] + np.pi) % (2 * np.pi) - np.pi
    if spec.color_jitter > 0:
        noise = rng.normal(0.0, spec.color_jitter * 255, size=rgb.shape)
        rgb = np.clip(rgb.astype(np.float64) + noise, 0, 255).astype(np.uint8)
    return xyz.astype(np.float32), rgb, None if boxes is None else boxes.astype(np.float32)


def color_to_feats(rgb: np.ndarray) -> np.ndarray:
    """uint8 colour -> float32 in [-0.5, 0.5]."""
    return rgb.astype(np.float32) / 255.0 - 0.5
