"""Sparse tensor handle: input validation, coarse_index, kernel-map caching, with_feats."""

from __future__ import annotations

import pytest
import torch

from t4p.sparse import coarse_index
from t4p.sparse.backend import make_backend
from t4p.sparse.torch_backend import STATS
from tests._sparse_helpers import BACKENDS, backend, random_sparse


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(
    "coords,feats,message",
    [
        (torch.zeros(0, 4, dtype=torch.int32), torch.zeros(0, 3), "empty"),
        (torch.tensor([[0.0, float("nan"), 0.0, 0.0]]), torch.zeros(1, 3), "NaN"),
        (torch.tensor([[0, 2**40, 0, 0]]), torch.zeros(1, 3), "int32"),
        (torch.zeros(3, 4, dtype=torch.int32) + torch.arange(3)[:, None], torch.zeros(2, 3), "mismatch"),
        (torch.zeros(2, 3, dtype=torch.int32), torch.zeros(2, 3), r"\(N, 4\)"),
        (torch.zeros(2, 4, dtype=torch.int32), torch.zeros(2, 3), "duplicate"),
    ],
)
def test_bad_input_raises_value_error(name, coords, feats, message):
    with pytest.raises(ValueError, match=message):
        backend(name).tensor(coords, feats)


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="sparse_backend"):
        make_backend("spconv")


@pytest.mark.parametrize("name", BACKENDS)
def test_coarse_index_and_with_feats(name):
    be = backend(name)
    coords, feats = random_sparse(3, seed=1)
    x = be.tensor(coords, feats)
    coarse = be.Conv(3, 3, 2, 2)(be.Conv(3, 3, 2, 2)(x))  # stride 4
    assert coarse.stride == 4
    idx = coarse_index(coords, coarse)
    assert (idx >= 0).all()
    # naive check: the coarse row's coordinates are the fine ones floored to multiples of 4
    expected = coords.clone()
    expected[:, 1:] = torch.div(coords[:, 1:], 4, rounding_mode="floor") * 4
    torch.testing.assert_close(coarse.coords[idx], expected)
    far = torch.tensor([[0, 100, 100, 100]], dtype=torch.int32)
    assert coarse_index(far, coarse).tolist() == [-1]
    y = x.with_feats(torch.ones(len(x), 7))
    torch.testing.assert_close(y.coords, x.coords)
    with pytest.raises(ValueError, match="with_feats"):
        x.with_feats(torch.ones(len(x) + 1, 7))


def test_kernel_maps_cached_per_coordinate_set():
    be = backend("torch")
    coords, feats = random_sparse(4, seed=2)
    convs = [be.Conv(4, 4, 3) for _ in range(3)] + [be.Conv(4, 4, 2, 2)]
    before = STATS["kernel_maps_built"]
    x = be.tensor(coords, feats)
    for conv in convs:
        x = conv(x)  # three k3 convs share one map; the strided conv builds a second
    assert STATS["kernel_maps_built"] - before == 2
    x = be.tensor(coords, feats)  # a new batch: a new coordinate set, maps rebuilt
    convs[0](x)
    assert STATS["kernel_maps_built"] - before == 3
