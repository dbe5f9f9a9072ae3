"""`make_backend(name)`: the sparse backend named by `model.sparse_backend`."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # torch only once a backend is made: importing this module stays light
    import torch
    from torch import nn

    from t4p.sparse.tensor import SparseTensor

log = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "minkowski", "torch")


def minkowski_available() -> bool:
    """Whether MinkowskiEngine can be imported (without importing it)."""
    return importlib.util.find_spec("MinkowskiEngine") is not None


class SparseBackend(Protocol):
    """The seam between the models and a sparse-convolution library (`torch_backend.TorchBackend`,
    `minkowski_backend.MinkowskiBackend`): tensors and the module classes, with the same parameter
    names and shapes on every backend, so state dicts move between them."""

    name: str

    @property
    def Conv(self) -> Callable[..., nn.Module]:  # (in, out, kernel_size, stride=1, bias=False)
        ...

    @property
    def ConvTranspose(self) -> Callable[..., nn.Module]:  # (in, out, kernel_size, stride, bias=False)
        ...

    @property
    def BatchNorm(self) -> Callable[..., nn.Module]:  # (channels, eps=1e-5, momentum=0.1)
        ...

    @property
    def ReLU(self) -> Callable[..., nn.Module]:
        ...

    def tensor(self, coords: torch.Tensor, feats: torch.Tensor,
               device: torch.device | str | None = None) -> SparseTensor:
        """Input tensor at stride 1 from (N, 4) integer coordinates and (N, C) features, rows kept in order."""
        ...

    def with_feats(self, x: SparseTensor, feats: torch.Tensor) -> SparseTensor:
        """`x`'s coordinates with other (N, C') features."""
        ...

    def cat(self, a: SparseTensor, b: SparseTensor) -> SparseTensor:
        """Channel concatenation of two tensors on the same coordinates."""
        ...


def make_backend(name: str = "auto") -> SparseBackend:
    """`auto` (ME where importable, else torch) | `minkowski` | `torch` -> the backend object."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"model.sparse_backend: expected one of {BACKEND_NAMES}, got {name!r}")
    if name == "auto":
        name = "minkowski" if minkowski_available() else "torch"
        log.info("sparse backend: auto -> %s", name)
    if name == "minkowski":
        if not minkowski_available():
            raise ValueError(
                "model.sparse_backend=minkowski but MinkowskiEngine is not importable "
                "(run `make setup` / scripts/build_minkowski.sh, or use sparse_backend=torch)"
            )
        from t4p.sparse.minkowski_backend import BACKEND  # optional: MinkowskiEngine only when asked for

        return BACKEND
    from t4p.sparse.torch_backend import TorchBackend  # torch only once a backend is made: the check above stays light

    return TorchBackend()
