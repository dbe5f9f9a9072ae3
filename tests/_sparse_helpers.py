"""Helpers of the sparse tests: random sparse inputs and the dense (conv3d) reference layout."""

from __future__ import annotations

import pytest
import torch

from t4p.sparse import make_backend
from t4p.sparse.torch_backend import kernel_offsets

BACKENDS = ["torch", pytest.param("minkowski", marks=pytest.mark.minkowski)]
GRID = 8


def backend(name: str):
    return make_backend(name)


def random_sparse(channels: int, batch: int = 2, occupancy: float = 0.3, seed: int = 0):
    """Random active sites on a GRID^3 grid -> coords int32 (N, 4), feats float32 (N, C)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, GRID, GRID, GRID, generator=g) < occupancy
    coords = torch.nonzero(mask).to(torch.int32)  # (N, 4)
    feats = torch.randn(len(coords), channels, generator=g)
    return coords, feats


def densify(coords: torch.Tensor, feats: torch.Tensor, stride: int = 1, batch: int = 2) -> torch.Tensor:
    """Scatter rows at tensor stride `stride` into a dense (B, C, G/s, G/s, G/s) grid."""
    size = GRID // stride
    dense = feats.new_zeros(batch, feats.shape[1], size, size, size)
    c = coords.long()
    dense[c[:, 0], :, c[:, 1] // stride, c[:, 2] // stride, c[:, 3] // stride] = feats
    return dense


def at_sites(dense: torch.Tensor, coords: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Rows of a dense (B, C, ...) grid at the active sites (N, 4) -> (N, C)."""
    c = coords.long()
    return dense[c[:, 0], :, c[:, 1] // stride, c[:, 2] // stride, c[:, 3] // stride]


def sparse_kernel(dense_weight: torch.Tensor) -> torch.Tensor:
    """conv3d weight (C_out, C_in, k, k, k) -> sparse kernel (K, C_in, C_out), offsets x fastest."""
    k = dense_weight.shape[2]
    offsets = kernel_offsets(k)
    if k % 2 == 1:
        offsets = offsets + (k - 1) // 2  # centred offsets -> dense kernel index
    return torch.stack([dense_weight[:, :, o[0], o[1], o[2]].t() for o in offsets])
