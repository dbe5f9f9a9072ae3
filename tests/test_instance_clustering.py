"""Clustering and offset loss of t4p/models/instance.py against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

from t4p.models.instance import cluster_instances, instance_centres, offset_loss, radius_components


def _naive_components(x: np.ndarray, r: float) -> np.ndarray:
    return connected_components(cdist(x, x) <= r, directed=False)[1]


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("seed", range(20))
def test_radius_components_match_dense_graph(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 500))
    x = rng.random((n, 3)) * rng.uniform(0.05, 0.5)
    if seed % 3 == 0:  # a dense clump (many points per cell: exercises the capped pass and pass 2)
        x[: n // 2] = rng.normal(0.1, 0.004, (n // 2, 3))
    r = float(rng.uniform(0.01, 0.05))
    assert _same_partition(radius_components(x, r), _naive_components(x, r))


def test_radius_components_chain_and_gap():
    # points 0.9 r apart along a line are one component; a gap of 1.1 r splits it
    r = 0.03
    line = np.zeros((10, 3))
    line[:, 0] = np.arange(10) * 0.9 * r
    line[5:, 0] += 0.2 * r  # gap between points 4 and 5 is 1.1 r
    comp = radius_components(line, r)
    assert len(set(comp[:5])) == 1 and len(set(comp[5:])) == 1 and comp[0] != comp[5]


def test_cluster_instances_per_class_min_points_and_scores():
    rng = np.random.default_rng(0)
    a = rng.normal([0, 0, 0], 0.005, (30, 3))  # class 0, instance A
    b = rng.normal([1, 0, 0], 0.005, (20, 3))  # class 0, instance B
    c = rng.normal([0, 0, 0], 0.005, (25, 3))  # class 1 on top of A: must stay separate (per class)
    d = rng.normal([2, 0, 0], 0.005, (3, 3))  # class 1, too small
    xyz = np.concatenate([a, b, c, d])
    prob = np.zeros((len(xyz), 2))
    prob[:50, 0] = 0.8
    prob[:50, 1] = 0.2
    prob[50:, 1] = 0.6
    prob[50:, 0] = 0.4
    out = cluster_instances(xyz, prob, radius=0.05, min_points=5)
    assert len(out.labels) == 3
    groups = [out.ids[:30], out.ids[30:50], out.ids[50:75]]
    assert all(len(set(g.tolist())) == 1 for g in groups)
    assert len({int(g[0]) for g in groups}) == 3
    assert (out.ids[75:] == -1).all()
    assert sorted(out.labels.tolist()) == [0, 0, 1]
    np.testing.assert_allclose(out.scores[out.labels == 0], 0.8)
    np.testing.assert_allclose(out.scores[out.labels == 1], 0.6)


class _Batch:
    def __init__(self, xyz, inst, p2v, coords):
        self.point_xyz, self.point_instances, self.point2voxel, self.coords = xyz, inst, p2v, coords


def test_offset_loss_hand_computed():
    # Two samples, each with instance id 0 (distinct instances: centres per sample); one point without instance.
    xyz = torch.tensor([[0.0, 0, 0], [2.0, 0, 0], [10.0, 0, 0], [10.0, 4, 0], [5.0, 5, 5]])
    inst = torch.tensor([0, 0, 0, 0, -1])
    coords = torch.tensor([[0, 0, 0, 0], [1, 0, 0, 0]], dtype=torch.int32)  # voxel 0 in sample 0, voxel 1 in 1
    p2v = torch.tensor([0, 0, 1, 1, 0])
    centres = instance_centres(xyz, inst, coords[p2v, 0])
    torch.testing.assert_close(centres[:4], torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [10.0, 2, 0], [10.0, 2, 0]]))
    offsets = torch.tensor([[1.0, 0, 0], [0.0, 1, 0]])  # per voxel
    terms = offset_loss(offsets, _Batch(xyz, inst, p2v, coords))
    # targets: (1,0,0), (-1,0,0), (0,2,0), (0,-2,0); predictions: (1,0,0), (1,0,0), (0,1,0), (0,1,0)
    # L1 sums: 0, 2, 1, 3 -> mean 1.5; cosines: 1, -1, 1, -1 -> mean 0 -> L_dir = 0
    assert float(terms["loss_offset"]) == pytest.approx(1.5)
    assert float(terms["loss_dir"]) == pytest.approx(0.0, abs=1e-6)
