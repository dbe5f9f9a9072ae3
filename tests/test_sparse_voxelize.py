"""voxelize against a naive per-point python loop; bad inputs."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from t4p.sparse.voxelize import voxelize


def naive_voxelize(xyz, voxel_size, labels, ignore_label=-100):
    """dict voxel -> point indices, label mode with ties to the smallest label."""
    cells: dict[tuple, list[int]] = {}
    for i, p in enumerate(xyz):
        key = tuple(int(np.floor(v / voxel_size)) for v in p)
        cells.setdefault(key, []).append(i)
    modes = {}
    for key, idx in cells.items():
        counts = Counter(int(labels[i]) for i in idx if labels[i] != ignore_label)
        if not counts:
            modes[key] = ignore_label
        else:
            best = max(counts.values())
            modes[key] = min(lab for lab, c in counts.items() if c == best)
    return cells, modes


def test_voxelize_matches_naive_loop():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-1.0, 1.0, size=(3000, 3))
    labels = rng.integers(0, 4, size=3000)
    labels[rng.random(3000) < 0.2] = -100
    vox = voxelize(xyz, 0.2, labels)
    cells, modes = naive_voxelize(xyz, 0.2, labels)
    assert vox.coords.dtype == np.int32 and vox.point2voxel.dtype == np.int64
    assert len(vox.coords) == len(cells)
    for row, key in enumerate(map(tuple, vox.coords.tolist())):
        members = cells[key]
        assert vox.labels[row] == modes[key]
        assert vox.counts[row] == len(members)
        assert vox.voxel2point[row] == members[0]
        assert np.all(vox.point2voxel[members] == row)
    # inverse map: every point sits in the voxel its row names
    np.testing.assert_array_equal(vox.coords[vox.point2voxel], np.floor(xyz / 0.2).astype(np.int32))
    assert (vox.coords.min() < 0) and (vox.counts.sum() == len(xyz))


def test_voxelize_all_ignored_voxel_and_ties():
    xyz = np.array([[0.01, 0, 0], [0.02, 0, 0], [0.03, 0, 0], [0.04, 0, 0], [1.5, 0, 0]])
    labels = np.array([3, 1, 1, 3, -100])
    vox = voxelize(xyz, 1.0, labels)
    np.testing.assert_array_equal(vox.labels, [1, -100])  # tie 1 vs 3 -> smallest; all ignored -> ignore
    assert voxelize(xyz, 1.0).labels is None


@pytest.mark.parametrize(
    "xyz,voxel_size,labels,message",
    [
        (np.zeros((0, 3)), 0.05, None, "empty"),
        (np.array([[0.0, np.nan, 1.0]]), 0.05, None, "NaN"),
        (np.array([[0.0, 1e12, 1.0]]), 0.05, None, "int32"),
        (np.ones((4, 2)), 0.05, None, r"\(N, 3\)"),
        (np.ones((4, 3)), 0.0, None, "voxel_size"),
        (np.ones((4, 3)), 0.05, np.ones(3, dtype=np.int64), "labels"),
    ],
)
def test_voxelize_bad_input(xyz, voxel_size, labels, message):
    with pytest.raises(ValueError, match=message):
        voxelize(xyz, voxel_size, labels)


def test_voxelize_import_is_light():
    code = "import sys, t4p.sparse.voxelize; assert 'torch' not in sys.modules and 'MinkowskiEngine' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
