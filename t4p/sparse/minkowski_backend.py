"""MinkowskiEngine 0.5.4 backend: thin wrappers whose parameters are ME's own.

The module classes subclass ME's modules, so their parameters (`kernel` (K, C_in, C_out),
`bias`, `bn.weight`, ...) are ME's and the state dict keys equal the torch backend's.
"""

from __future__ import annotations

import MinkowskiEngine as ME
import torch

from t4p.sparse.tensor import ReLU, SparseTensor, check_coords_feats

BACKEND: MinkowskiBackend  # the module-level instance, assigned below (wrap runs only after import)


def wrap(t: ME.SparseTensor) -> SparseTensor:
    return SparseTensor(None, t.F, t.tensor_stride[0], BACKEND, t)


class Conv(ME.MinkowskiConvolution):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias=False):
        super().__init__(in_channels, out_channels, kernel_size=kernel_size, stride=stride, bias=bias, dimension=3)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return wrap(super().forward(x.impl))


class ConvTranspose(ME.MinkowskiConvolutionTranspose):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias=False):
        super().__init__(in_channels, out_channels, kernel_size=kernel_size, stride=stride, bias=bias, dimension=3)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return wrap(super().forward(x.impl))


class BatchNorm(ME.MinkowskiBatchNorm):
    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(channels, eps=eps, momentum=momentum)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return wrap(super().forward(x.impl))


class MinkowskiBackend:
    """Factory of tensors and modules over MinkowskiEngine."""

    name = "minkowski"
    Conv = Conv
    ConvTranspose = ConvTranspose
    BatchNorm = BatchNorm
    ReLU = ReLU

    def tensor(self, coords, feats, device: torch.device | str | None = None) -> SparseTensor:
        """Input tensor at stride 1; rows stay in the given order (duplicates are rejected)."""
        coords, feats = check_coords_feats(coords, feats)
        if device is not None:
            feats = feats.to(device)
        # a new input tensor gets its own coordinate manager (ME's default mode): maps per batch
        t = ME.SparseTensor(
            features=feats,
            coordinates=coords.to(device=feats.device, dtype=torch.int32).contiguous(),
            quantization_mode=ME.SparseTensorQuantizationMode.UNWEIGHTED_AVERAGE,
        )
        if t.F.shape[0] != coords.shape[0]:
            raise ValueError("coords: duplicate coordinates (voxelize the points first)")
        if not torch.equal(t.C.cpu(), coords.cpu()):
            raise ValueError("MinkowskiEngine reordered the input rows; expected the order to be kept")
        return SparseTensor(coords.to(feats.device), t.F, 1, self, t)

    def coords_of(self, x: SparseTensor) -> torch.Tensor:
        return x.impl.C.to(torch.int32)

    def with_feats(self, x: SparseTensor, feats: torch.Tensor) -> SparseTensor:
        t = ME.SparseTensor(
            feats, coordinate_map_key=x.impl.coordinate_map_key, coordinate_manager=x.impl.coordinate_manager
        )
        return SparseTensor(x._coords, feats, x.stride, self, t)

    def cat(self, a: SparseTensor, b: SparseTensor) -> SparseTensor:
        if a.impl.coordinate_map_key != b.impl.coordinate_map_key:
            raise ValueError("cat: tensors are not on the same coordinate set")
        t = ME.cat(a.impl, b.impl)
        return SparseTensor(a._coords, t.F, a.stride, self, t)


BACKEND = MinkowskiBackend()
