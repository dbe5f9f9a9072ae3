"""L_e pairs each pixel with the CLIP cell the encoder really computes it in (issue 15, H4).

The encoder's grid (h, w) is read off its real output; ModifiedResNet pools by floor, so the
reference for pixel (v, u) is the cell (min(v // 32, h - 1), min(u // 32, w - 1)), computed here
pixel by pixel with a plain loop, independent of the code under test.
"""

from __future__ import annotations

import pytest
import torch

from t4p.config import ClipConfig
from t4p.losses import lift_pairs
from t4p.models.clip import DenseImageEncoder, load_clip


@pytest.fixture(scope="module")
def encoder():
    return DenseImageEncoder(load_clip(ClipConfig(weights="random-tiny")))


@pytest.mark.parametrize("size", [(96, 128), (240, 320), (250, 333)])
def test_lifted_cell_of_every_pixel_is_the_encoders(encoder, size):
    big_h, big_w = size
    with torch.no_grad():
        grid = tuple(encoder(torch.zeros(1, 3, big_h, big_w)).shape[2:])  # the encoder's own output size
    assert grid == (big_h // 32, big_w // 32)
    h, w = grid
    pixels = torch.arange(big_h * big_w)
    zeros = torch.zeros_like(pixels)
    lifted = lift_pairs(zeros, pixels, pixels, size, grid, pixels, stride=encoder.stride)  # one voxel per pixel
    cell_of_pixel = dict(zip(lifted.voxel.tolist(), lifted.cell.tolist(), strict=True))
    wrong = 0
    for v in range(big_h):
        for u in range(big_w):
            expected = min(v // 32, h - 1) * w + min(u // 32, w - 1)
            wrong += cell_of_pixel[v * big_w + u] != expected
    assert wrong == 0, f"{wrong} of {big_h * big_w} pixels paired with another CLIP cell"
