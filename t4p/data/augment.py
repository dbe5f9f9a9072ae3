"""Scene augmentations: flips, rotation about z, scale, colour jitter.

PointContrast's S3DIS recipe (x flip, any rotation, scale 0.9-1.1) by default; the detection
recipes set VoteNet's per-dataset ranges (``t4p.data.datasets.augment_spec``). All functions take
a numpy ``Generator`` and return new arrays. Boxes (K, 8) = centre xyz, size xyz, heading, class
follow the points they describe: oriented boxes turn with the scene; axis-aligned boxes (ScanNet)
become the axis-aligned bounds of their turned corners, heading 0, as VoteNet recomputes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AugmentSpec:
    flip: bool = True  # mirror x with p 0.5
    rotate_z: bool = True
    scale_min: float = 0.9
    scale_max: float = 1.1
    color_jitter: float = 0.05  # std of additive colour noise as a fraction of 255
    rotate_max: float = np.pi  # the angle about z is U(-rotate_max, rotate_max)
    flip_y: bool = False  # also mirror y with p 0.5 (VoteNet's ScanNet)
    axis_aligned_boxes: bool = False  # boxes carry no heading: recompute their bounds after turning


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
    if spec.flip and rng.random() < 0.5:  # mirror x: heading h -> pi - h
        xyz = xyz * np.array([-1.0, 1.0, 1.0])
        if boxes is not None:
            boxes[:, 0] *= -1
            boxes[:, 6] = np.pi - boxes[:, 6]
    if spec.flip_y and rng.random() < 0.5:  # mirror y: heading h -> -h
        xyz = xyz * np.array([1.0, -1.0, 1.0])
        if boxes is not None:
            boxes[:, 1] *= -1
            boxes[:, 6] = -boxes[:, 6]
    if spec.rotate_z:
        angle = rng.uniform(-spec.rotate_max, spec.rotate_max)
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
        if spec.axis_aligned_boxes:
            boxes = axis_aligned_bounds(boxes)
    if spec.color_jitter > 0:
        noise = rng.normal(0.0, spec.color_jitter * 255, size=rgb.shape)
        rgb = np.clip(rgb.astype(np.float64) + noise, 0, 255).astype(np.uint8)
    return xyz.astype(np.float32), rgb, None if boxes is None else boxes.astype(np.float32)


def axis_aligned_bounds(boxes: np.ndarray) -> np.ndarray:
    """(K, 8) boxes turned by their heading -> the axis-aligned boxes bounding them (heading 0).

    A box of sizes (l, w) turned by h spans |cos h| l + |sin h| w along x and |sin h| l + |cos h| w along y.
    """
    out = boxes.copy()
    c, s = np.abs(np.cos(boxes[:, 6])), np.abs(np.sin(boxes[:, 6]))
    out[:, 3] = c * boxes[:, 3] + s * boxes[:, 4]
    out[:, 4] = s * boxes[:, 3] + c * boxes[:, 4]
    out[:, 6] = 0.0
    return out


def color_to_feats(rgb: np.ndarray) -> np.ndarray:
    """uint8 colour -> float32 in [-0.5, 0.5]."""
    return rgb.astype(np.float32) / 255.0 - 0.5
