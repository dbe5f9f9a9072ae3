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
from t4p.models.decoder_2d import Decoder2D


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


def _identity_decoder(stride: int) -> Decoder2D:
    """A g2D that passes a one-channel input through unchanged (eval mode, BN at identity; every
    convolution's centre tap averages its input channels, which all carry the same values)."""
    dec = Decoder2D(1, 1, mid_channels=4, stride=stride).eval()
    with torch.no_grad():
        for module in dec.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.zero_()
                k = module.kernel_size[0] // 2
                module.weight[:, :, k, k] = 1.0 / module.in_channels
                if module.bias is not None:
                    module.bias.zero_()
    return dec


@pytest.mark.parametrize("size", [(240, 320), (250, 333)])
def test_decoder_centres_each_cell_on_the_pixels_it_covers(size):
    """z2D (read by L_d) puts cell (i, j) where the encoder computed it: centred on pixel 32 i + 16, and
    the remainder rows/columns the encoder's pools drop repeat the last cell (issue 15, the one mapping)."""
    big_h, big_w = size
    h, w = big_h // 32, big_w // 32
    dec = _identity_decoder(32)
    pos_h, pos_w = torch.arange(big_h, dtype=torch.float64), torch.arange(big_w, dtype=torch.float64)
    for i, j in [(1, 1), (h - 2, w - 2), (h // 2, w // 2)]:  # inner cells: their response is symmetric
        x = torch.zeros(1, 1, h, w)
        x[0, 0, i, j] = 1.0
        with torch.no_grad():
            z, _ = dec(x, out_size=size)  # (1, 1, H, W)
        z = z[0, 0].double()
        centre_v = float((z.sum(1) * pos_h).sum() / z.sum())
        centre_u = float((z.sum(0) * pos_w).sum() / z.sum())
        # pixel centres: the cell's 32 pixels 32 i .. 32 i + 31 average to 32 i + 15.5
        assert centre_v == pytest.approx(32 * i + 15.5, abs=1e-3), (size, i, j)
        assert centre_u == pytest.approx(32 * j + 15.5, abs=1e-3), (size, i, j)
        assert torch.equal(z[32 * h :, :], z[32 * h - 1 : 32 * h, :].expand(big_h - 32 * h, -1))
        assert torch.equal(z[:, 32 * w :], z[:, 32 * w - 1 : 32 * w].expand(-1, big_w - 32 * w))
