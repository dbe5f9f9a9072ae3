"""SR-UNet34: MinkowskiEngine's MinkUNet34C (the paper's "34-layer Sparse Residual UNet"), no final layer.

Layer names follow ME's `examples/minkunet.py` (`conv0p1s1`, `bn0`, `block1`, ..., `convtr7p2s2`,
`bntr7`, `block8`), so the state dict is the same on both sparse backends. The encoder output at
stride 16 (`h3d`, `enc_planes[-1]` channels) and the decoder output at stride 1 (`z3d`,
`dec_planes[-1]` channels) are exposed separately: Text4Point puts its TQM between them.
"""

from __future__ import annotations

import math

import torch.nn as nn

from t4p.sparse import SparseTensor, make_backend


class BasicBlock(nn.Module):
    """ResNet basic block: conv3-BN-ReLU-conv3-BN + (1x1 conv-BN) shortcut, ReLU."""

    expansion = 1

    def __init__(self, backend, inplanes: int, planes: int, bn_momentum: float = 0.1):
        super().__init__()
        self.backend = backend
        self.conv1 = backend.Conv(inplanes, planes, kernel_size=3)
        self.norm1 = backend.BatchNorm(planes, momentum=bn_momentum)
        self.conv2 = backend.Conv(planes, planes, kernel_size=3)
        self.norm2 = backend.BatchNorm(planes, momentum=bn_momentum)
        self.relu = backend.ReLU(inplace=True)  # on fresh BN / sum outputs, as ME's blocks
        self.downsample = None
        if inplanes != planes:
            self.downsample = nn.Sequential(
                backend.Conv(inplanes, planes, kernel_size=1), backend.BatchNorm(planes, momentum=bn_momentum)
            )

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out.with_feats(out.feats + residual.feats))


def make_layer(backend, inplanes: int, planes: int, blocks: int, bn_momentum: float) -> nn.Sequential:
    layers = [BasicBlock(backend, inplanes, planes, bn_momentum)]
    layers += [BasicBlock(backend, planes, planes, bn_momentum) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class SRUNet(nn.Module):
    """MinkUNet34C with configurable stem kernel/channels, planes and block counts (`model.*`)."""

    def __init__(self, model_cfg, in_channels: int | None = None, backend=None):
        super().__init__()
        self.backend = backend if backend is not None else make_backend(model_cfg.sparse_backend)
        be, m = self.backend, model_cfg
        in_channels = m.in_channels if in_channels is None else in_channels
        mom = m.bn_momentum
        enc, dec, stem = tuple(m.enc_planes), tuple(m.dec_planes), m.stem_channels
        self.out_channels = dec[-1]
        self.enc_channels = enc[-1]

        self.conv0p1s1 = be.Conv(in_channels, stem, kernel_size=m.stem_kernel)
        self.bn0 = be.BatchNorm(stem, momentum=mom)
        inplanes = stem
        skip_planes = [stem]
        for i, name in enumerate(("conv1p1s2", "conv2p2s2", "conv3p4s2", "conv4p8s2")):
            # each encoder stage: strided conv k2 s2 + BN + ReLU, then BasicBlocks
            setattr(self, name, be.Conv(inplanes, inplanes, kernel_size=2, stride=2))
            setattr(self, f"bn{i + 1}", be.BatchNorm(inplanes, momentum=mom))
            setattr(self, f"block{i + 1}", make_layer(be, inplanes, enc[i], m.enc_blocks[i], mom))
            inplanes = enc[i]
            skip_planes.append(inplanes)
        for i, name in enumerate(("convtr4p16s2", "convtr5p8s2", "convtr6p4s2", "convtr7p2s2")):
            # each decoder stage: transposed conv k2 s2 + BN + ReLU, concat with the skip, BasicBlocks
            setattr(self, name, be.ConvTranspose(inplanes, dec[i], kernel_size=2, stride=2))
            setattr(self, f"bntr{i + 4}", be.BatchNorm(dec[i], momentum=mom))
            inplanes = dec[i] + skip_planes[3 - i]
            setattr(self, f"block{i + 5}", make_layer(be, inplanes, dec[i], m.dec_blocks[i], mom))
            inplanes = dec[i]
        self.relu = be.ReLU(inplace=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """ME's ResNetBase init: kaiming normal (fan_out, relu) kernels, BN weight 1, bias 0."""
        for name, p in self.named_parameters():
            if name.endswith("kernel"):
                k_in_out = p.shape if p.dim() == 3 else (1, *p.shape)
                std = math.sqrt(2.0 / (k_in_out[0] * k_in_out[2]))  # torch's fan_out of (K, C_in, C_out)
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bn.weight"):
                nn.init.ones_(p)
            elif name.endswith("bn.bias"):
                nn.init.zeros_(p)

    def encode(self, x: SparseTensor) -> tuple[SparseTensor, list[SparseTensor]]:
        """x (N, C_in) at stride 1 -> (h3d at stride 16 with enc_planes[-1] channels, skips)."""
        out_p1 = self.relu(self.bn0(self.conv0p1s1(x)))  # (N, stem)
        skips = [out_p1]
        out = out_p1
        for i in range(1, 5):
            out = getattr(self, f"conv{i}p{2 ** (i - 1)}s2")(out)
            out = self.relu(getattr(self, f"bn{i}")(out))
            out = getattr(self, f"block{i}")(out)  # stride 2**i, enc_planes[i-1] channels
            if i < 4:
                skips.append(out)
        return out, skips

    def decode(self, h3d: SparseTensor, skips: list[SparseTensor]) -> SparseTensor:
        """(h3d, skips) -> z3d at stride 1 with dec_planes[-1] channels, rows aligned with the input."""
        out = h3d
        names = ("convtr4p16s2", "convtr5p8s2", "convtr6p4s2", "convtr7p2s2")
        for i, name in enumerate(names):
            out = self.relu(getattr(self, f"bntr{i + 4}")(getattr(self, name)(out)))
            out = self.backend.cat(out, skips[3 - i])  # (N_s, dec_planes[i] + skip channels)
            out = getattr(self, f"block{i + 5}")(out)
        return out

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self.decode(*self.encode(x))
