"""`make_backend(name)`: the sparse backend named by `model.sparse_backend`."""

from __future__ import annotations

import importlib.util
import logging

log = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "minkowski", "torch")


def minkowski_available() -> bool:
    """Whether MinkowskiEngine can be imported (without importing it)."""
    return importlib.util.find_spec("MinkowskiEngine") is not None


def make_backend(name: str = "auto"):
    """`auto` (ME where importable, else torch) | `minkowski` | `torch` -> a backend object with
    `tensor(coords, feats)`, `cat(a, b)`, `with_feats(x, f)` and the module classes `Conv`,
    `ConvTranspose`, `BatchNorm`, `ReLU` (same parameter names and shapes on every backend)."""
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
