"""2D-3D pairs from one RGB-D frame (Sec. 3.1, Eq. 2) and their pixel-voxel correspondences.

For a frame (colour C_i, depth D_i, camera-to-world pose T_i):
1. resize colour to H x W and scale the colour intrinsics; register the depth into that
   colour camera at H x W (back-project with the depth intrinsics, re-project, keep the
   nearest surface per pixel) so colour and depth share one K;
2. back-project the registered depth into world coordinates (Eq. 2 inverted) and voxelise;
3. project every voxel centre into the frame with [u v 1]^T ~ K T_i^{-1} [x y z 1]^T (Eq. 2)
   and keep it when it lands inside the image and agrees with the depth map there within
   ``depth_tol`` metres. Pairs are (voxel row, pixel = v * W + u) at full resolution; the
   model lifts them to coarser levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from t4p.data.scannet_rgbd import RGBDFrame, scale_intrinsics
from t4p.io import save_npz
from t4p.sparse.voxelize import voxelize


@dataclass
class FramePairs:
    frame_id: str
    color: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, 0 = invalid
    K: np.ndarray  # (3, 3) intrinsics of the H x W frame
    pose: np.ndarray  # (4, 4) camera-to-world
    coords: np.ndarray  # (M, 3) int32 world voxel coordinates floor(xyz / voxel_size)
    feats: np.ndarray  # (M, 3) uint8 mean colour of the points in each voxel
    pair_voxel: np.ndarray  # (P,) int32 row into coords
    pair_pixel: np.ndarray  # (P,) int32 v * W + u
    voxel_size: float

    @property
    def num_pairs(self) -> int:
        return len(self.pair_voxel)


def backproject_camera(depth: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid depth pixels -> camera-frame points (N, 3) and their flat pixel index v * W + u (N,)."""
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    x = (u - K[0, 2]) * z / K[0, 0]
    y = (v - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, z], axis=1), v * depth.shape[1] + u  # (N, 3), (N,)


def backproject(depth: np.ndarray, K: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid depth pixels -> world points (N, 3) with camera-to-world ``pose`` (inverse of Eq. 2)."""
    cam, pix = backproject_camera(depth, K)
    return cam @ pose[:3, :3].T + pose[:3, 3], pix


def project(xyz: np.ndarray, K: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points (N, 3) -> rounded pixel (u, v) and camera depth z (Eq. 2)."""
    world_to_cam = np.linalg.inv(pose)
    cam = xyz @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]  # (N, 3)
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.rint(K[0, 0] * cam[:, 0] / z + K[0, 2])
        v = np.rint(K[1, 1] * cam[:, 1] / z + K[1, 2])
    return u, v, z


def register_depth(
    depth: np.ndarray, K_depth: np.ndarray, K_out: np.ndarray, hw: tuple[int, int]
) -> np.ndarray:
    """Re-sample a depth map into a camera with intrinsics ``K_out`` at ``hw``; nearest surface wins."""
    h, w = hw
    cam, _ = backproject_camera(depth, K_depth)  # (N, 3)
    out = np.zeros(h * w, dtype=np.float32)
    if len(cam) == 0:
        return out.reshape(h, w)
    u = np.rint(K_out[0, 0] * cam[:, 0] / cam[:, 2] + K_out[0, 2]).astype(np.int64)
    v = np.rint(K_out[1, 1] * cam[:, 1] / cam[:, 2] + K_out[1, 2]).astype(np.int64)
    ok = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    idx, z = v[ok] * w + u[ok], cam[ok, 2]
    order = np.argsort(z, kind="stable")
    uniq, first = np.unique(idx[order], return_index=True)  # nearest point per pixel
    out[uniq] = z[order][first]
    return out.reshape(h, w)


def resize_frame(frame: RGBDFrame, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(colour (H, W, 3), registered depth (H, W), K (3, 3)) of a frame at ``hw``."""
    h, w = hw
    K = scale_intrinsics(frame.K_color, frame.color.shape[:2], hw)
    color = frame.color
    if color.shape[:2] != (h, w):
        color = np.array(Image.fromarray(color).resize((w, h), Image.Resampling.BILINEAR))
    same_camera = frame.depth.shape == (h, w) and np.allclose(
        scale_intrinsics(frame.K_depth, frame.depth.shape, hw), K
    )
    depth = (
        frame.depth.astype(np.float32) if same_camera else register_depth(frame.depth, frame.K_depth, K, hw)
    )
    return color, depth, K


def correspondences(
    coords: np.ndarray,
    voxel_size: float,
    depth: np.ndarray,
    K: np.ndarray,
    pose: np.ndarray,
    depth_tol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Voxels whose centre projects into the frame with depth within ``depth_tol``: (voxel rows, pixels)."""
    h, w = depth.shape
    centres = (coords.astype(np.float64) + 0.5) * voxel_size  # (M, 3)
    u, v, z = project(centres, K, pose)
    inside = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    rows = np.flatnonzero(inside)
    pix = (v[rows] * w + u[rows]).astype(np.int64)
    d = depth.reshape(-1)[pix]
    ok = (d > 0) & (np.abs(d - z[rows]) <= depth_tol)
    return rows[ok].astype(np.int32), pix[ok].astype(np.int32)


def build_pairs(frame: RGBDFrame, hw: tuple[int, int], voxel_size: float, depth_tol: float) -> FramePairs:
    """Resize, back-project, voxelise and match one frame (see the module docstring)."""
    color, depth, K = resize_frame(frame, hw)
    xyz, pix = backproject(depth, K, frame.pose)  # (N, 3), (N,)
    vox = voxelize(xyz, voxel_size)
    rgb = color.reshape(-1, 3)[pix].astype(np.float64)  # (N, 3)
    m = len(vox.coords)
    sums = np.stack([np.bincount(vox.point2voxel, weights=rgb[:, c], minlength=m) for c in range(3)], 1)
    feats = np.rint(sums / vox.counts[:, None]).astype(np.uint8)  # (M, 3)
    pv, pp = correspondences(vox.coords, voxel_size, depth, K, frame.pose, depth_tol)
    return FramePairs(frame.frame_id, color, depth, K, frame.pose, vox.coords, feats, pv, pp, voxel_size)


def save_pairs(path: str | Path, p: FramePairs) -> None:
    save_npz(
        path,
        frame_id=np.array(p.frame_id),
        color=p.color,
        depth=p.depth.astype(np.float16),
        K=p.K,
        pose=p.pose,
        coords=p.coords,
        feats=p.feats,
        pair_voxel=p.pair_voxel,
        pair_pixel=p.pair_pixel,
        voxel_size=np.array(p.voxel_size),
    )


def load_pairs(path: str | Path) -> FramePairs:
    with np.load(path) as z:
        return FramePairs(
            str(z["frame_id"]),
            z["color"],
            z["depth"].astype(np.float32),
            z["K"],
            z["pose"],
            z["coords"],
            z["feats"],
            z["pair_voxel"],
            z["pair_pixel"],
            float(z["voxel_size"]),
        )
