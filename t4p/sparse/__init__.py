"""Sparse 3D tensors and convolutions behind one interface (the only importer of MinkowskiEngine).

`voxelize` is numpy-only and imported eagerly; everything touching torch (`SparseTensor`,
`make_backend`, `coarse_index`) is imported lazily so that data code can use `voxelize`
without importing torch or MinkowskiEngine.
"""

from __future__ import annotations

import importlib

from t4p.sparse.voxelize import Voxelized, voxelize

_LAZY = {
    "SparseTensor": "t4p.sparse.tensor",
    "coarse_index": "t4p.sparse.tensor",
    "features_at_points": "t4p.sparse.tensor",
    "make_backend": "t4p.sparse.backend",
    "minkowski_available": "t4p.sparse.backend",
}

__all__ = ["Voxelized", "voxelize", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 't4p.sparse' has no attribute {name!r}")
