"""The per-frame dense feature cache: computed once, reused, fp16, keyed by weights/frame/resolution."""

from __future__ import annotations

import torch

from t4p.config import ClipConfig
from t4p.io import TMP_PREFIX
from t4p.models.clip import DenseImageEncoder, load_clip
from t4p.models.feature_cache import FeatureCache


def test_cache_computes_once_and_reuses(tmp_path):
    enc = DenseImageEncoder(load_clip(ClipConfig(weights="random-tiny")))
    calls: list[int] = []

    def encode(images: torch.Tensor) -> torch.Tensor:
        calls.append(images.shape[0])
        return enc(images)

    cache = FeatureCache(tmp_path, enc.cache_id)
    images = torch.randn(3, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    ids = ["scene0000_00/000000", "scene0000_00/000025", "scene0001_00/000000"]
    first = cache.get_or_compute(ids, images, encode)
    assert calls == [3] and first.shape == (3, enc.embed_dim, 3, 4) and first.dtype == torch.float32
    assert torch.equal(first, enc(images).half().float())  # stored and returned as fp16 values
    again = cache.get_or_compute(ids, images, encode)
    assert calls == [3] and torch.equal(again, first)  # second epoch: no encoder call
    # a batch mixing cached and new frames encodes only the new one
    mixed = cache.get_or_compute([ids[1], "scene0002_00/000000"], images[1:3], encode)
    assert calls == [3, 1] and torch.equal(mixed[0], first[1])
    # another resolution and other weights are other entries
    cache.get_or_compute(ids[:1], images[:1, :, :64, :64], encode)
    assert calls == [3, 1, 1]
    other = FeatureCache(tmp_path, "other-weights")
    assert other.get(ids[0], (96, 128)) is None
    assert cache.hits == 4 and cache.misses == 5
    files = list(tmp_path.rglob("*"))
    assert files and not [f for f in files if f.name.startswith(TMP_PREFIX)]  # no temporary left behind
    payload = enc.embed_dim * 3 * 4 * 2  # fp16
    assert payload < cache.bytes_per_frame((96, 128)) < payload + 1024  # + npz/npy headers, fingerprint


def test_same_id_other_pixels_is_recomputed(tmp_path):
    """Two datasets (or a regenerated synthetic scene) reusing a frame id never get stale features."""
    cache = FeatureCache(tmp_path, "w")
    calls: list[int] = []

    def encode(images: torch.Tensor) -> torch.Tensor:
        calls.append(images.shape[0])
        return images.mean(dim=1, keepdim=True)[:, :, ::32, ::32].repeat(1, 4, 1, 1)  # (B, 4, h, w)

    a = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    b = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    fa = cache.get_or_compute(["scene0/0"], a, encode)
    fb = cache.get_or_compute(["scene0/0"], b, encode)
    assert calls == [1, 1] and not torch.equal(fa, fb)
    assert torch.equal(fb, encode(b).half().float())
    assert torch.equal(cache.get_or_compute(["scene0/0"], b, encode), fb) and calls == [1, 1, 1]


def test_unreadable_entry_is_recomputed(tmp_path):
    cache = FeatureCache(tmp_path, "w")
    feats = torch.randn(8, 2, 3)
    cache.put("f/1", (64, 96), feats, "abc")
    assert torch.equal(cache.get("f/1", (64, 96)), feats.half())
    assert torch.equal(cache.get("f/1", (64, 96), "abc"), feats.half())
    assert cache.get("f/1", (64, 96), "other") is None
    cache.path("f/1", (64, 96)).write_bytes(b"garbage")
    assert cache.get("f/1", (64, 96)) is None
    assert cache.path("a/b", (1, 1)) != cache.path("a_b", (1, 1))  # ids never collide
