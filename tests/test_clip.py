"""Oracle tests for the CLIP side: dense Eq. 1 features against open_clip's own attention pool and a
hand-written ``F.multi_head_attention_forward``; checkpoint formats; fixed text embeddings."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.model import trace_model

from t4p.config import ClipConfig
from t4p.losses import pixel_cell_index
from t4p.models import clip as tclip
from t4p.models.clip import ClipWeightsError, ClipWeightsMismatch, DenseImageEncoder, FixedTextEmbeddings, load_clip

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def tiny():
    return load_clip(ClipConfig(weights="random-tiny"))


@pytest.fixture(scope="module")
def rn50():
    return load_clip(ClipConfig(arch="RN50", weights="random"))  # open_clip.create_model("RN50"), seeded


@pytest.fixture(params=["tiny", "rn50"])
def bundle(request, tiny, rn50):
    return {"tiny": tiny, "rn50": rn50}[request.param]


def _images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def reference_mha(visual, images: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Independent reference: all tokens of torch's multi_head_attention_forward with the pool's weights.

    Returns (1 + h*w, B, d): token 0 = global, then the grid in row-major order.
    """
    with torch.no_grad():
        x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(images)))))  # (B, C, h, w)
        x = x.flatten(2).permute(2, 0, 1)  # (h*w, B, C)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0) + pos[:, None, :]  # (1+h*w, B, C)
        pool = visual.attnpool
        out, _ = F.multi_head_attention_forward(
            query=x, key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=pool.num_heads,
            q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
            use_separate_proj_weight=True, training=False, need_weights=False)
    return out


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4) -> None:
    scale = b.abs().max().clamp_min(1e-6)
    assert (a - b).abs().max() <= rtol * scale, f"max diff {(a - b).abs().max():.3g} vs scale {scale:.3g}"


# --------------------------------------------------------------------------- dense features (Eq. 1)


def test_global_token_equals_open_clip_attnpool_at_224(bundle):
    enc = DenseImageEncoder(bundle)
    images = _images(2, 224, 224)
    dense, glob = enc.forward_with_global(images)
    assert dense.shape == (2, bundle.embed_dim, 7, 7)
    with torch.no_grad():
        ref = bundle.model.encode_image(images)  # open_clip's own AttentionPool2d, token 0
    _close(glob, ref)


def test_every_position_equals_hand_written_mha_at_224(bundle):
    enc = DenseImageEncoder(bundle)
    images = _images(2, 224, 224, seed=1)
    dense, glob = enc.forward_with_global(images)
    ref = reference_mha(bundle.model.visual, images, bundle.model.visual.attnpool.positional_embedding)
    _close(glob, ref[0])
    _close(dense.flatten(2).permute(2, 0, 1), ref[1:])  # (h*w, B, d)
    _close(enc(images), dense)  # forward() is the dense part of forward_with_global()


def test_interpolated_pos_embed_keeps_equality_at_240x320(bundle):
    enc = DenseImageEncoder(bundle)
    images = _images(2, 240, 320, seed=2)
    dense = enc(images)
    # ModifiedResNet's average pools floor: 240 -> 60 -> 30 -> 15 -> 7 rows, 320 -> 10 columns
    assert dense.shape == (2, bundle.embed_dim, 7, 10)
    # the interpolated table, computed here independently: bicubic over the 7x7 grid, global row kept
    pos = bundle.model.visual.attnpool.positional_embedding.detach()
    c = pos.shape[1]
    grid = F.interpolate(pos[1:].T.reshape(1, c, 7, 7), size=(7, 10), mode="bicubic", align_corners=False)
    table = torch.cat([pos[:1], grid.reshape(c, 70).T], dim=0)  # (71, C)
    assert torch.allclose(enc.pos_embed((7, 10), pos.device, pos.dtype), table, atol=1e-6)
    assert enc.pos_embed((7, 10), pos.device, pos.dtype) is enc.pos_embed((7, 10), pos.device, pos.dtype)
    ref = reference_mha(bundle.model.visual, images, table)
    _close(dense.flatten(2).permute(2, 0, 1), ref[1:])


def test_odd_small_sizes_and_speed(tiny):
    enc = DenseImageEncoder(tiny)
    images = _images(2, 60, 80)
    out = enc(images)
    assert out.shape == (2, tiny.embed_dim, 1, 2) and torch.isfinite(out).all()
    assert enc(_images(1, 97, 131)).shape[2:] == (3, 4)
    # CPU time of this thread on one intra-op thread: robust to other processes sharing the machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = float("inf")
        for _ in range(5):
            t = time.thread_time()
            enc(images)
            best = min(best, time.thread_time() - t)
    finally:
        torch.set_num_threads(threads)
    assert best < 0.1, f"tiny CLIP dense forward on (2, 3, 60, 80) took {best * 1e3:.1f} ms of CPU"


def test_encoder_is_frozen_and_outside_state_dict():
    enc = DenseImageEncoder(load_clip(ClipConfig(weights="random-tiny")))
    enc.train()
    assert not any(m.training for m in enc.visual.modules())
    assert not any(p.requires_grad for p in enc.visual.parameters())
    assert list(enc.parameters()) == [] and enc.state_dict() == {}  # no optimiser, DDP or checkpoint sees it
    images = _images(1, 64, 64).requires_grad_(True)
    out = enc(images)
    assert not out.requires_grad
    enc.to(torch.float64)  # .to() reaches the frozen tower
    assert enc.visual.conv1.weight.dtype == torch.float64
    _close(enc(images.double()).float(), out, rtol=1e-4)


def test_maskclip_value_shortcut(tiny):
    enc = DenseImageEncoder(tiny, mode="maskclip")
    images = _images(1, 128, 160)
    pool, v = tiny.model.visual.attnpool, tiny.model.visual
    with torch.no_grad():
        x = v.layer4(v.layer3(v.layer2(v.layer1(v.stem(images)))))[0]  # (C, h, w)
        val = torch.einsum("oc,chw->ohw", pool.v_proj.weight, x) + pool.v_proj.bias[:, None, None]
        ref = torch.einsum("oc,chw->ohw", pool.c_proj.weight, val) + pool.c_proj.bias[:, None, None]
    _close(enc(images)[0], ref)
    with pytest.raises(ValueError, match="dense_mode"):
        DenseImageEncoder(tiny, mode="bogus")


# --------------------------------------------------------------------------- loading weights


def test_random_tiny_is_deterministic_and_labelled(caplog):
    with caplog.at_level(logging.WARNING, logger="t4p.models.clip"):
        a = load_clip(ClipConfig(weights="random-tiny"))
    assert "RANDOM WEIGHTS (tiny CLIP, not a trained model" in caplog.text
    assert "RANDOM WEIGHTS (tiny CLIP, not a trained model" in a.describe()
    b = load_clip(ClipConfig(weights="random-tiny"))
    assert a.is_random and a.weights_id == b.weights_id
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not any(p.requires_grad for p in a.model.parameters()) and not a.model.training


def _state_equal(m1: torch.nn.Module, m2: torch.nn.Module) -> None:
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert set(s1) == set(s2)
    for k in s1:
        assert torch.equal(s1[k].float(), s2[k].float()), k


@pytest.fixture(scope="module")
def fp16_exact_tiny():
    """A tiny CLIP whose weights are exactly representable in fp16 (OpenAI archives store fp16)."""
    model = tclip.random_model(tclip.TINY_ARCH, seed=7).eval()
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.half().float())
    return model


@pytest.mark.slow
def test_openai_torchscript_archive_loads(fp16_exact_tiny, tmp_path):
    """A genuine TorchScript archive in OpenAI's layout, built with open_clip's ``trace_model``.

    OpenAI's archive has no ``attn_mask`` entry in its state dict (OpenAI builds the mask on the fly);
    open_clip registers it as a buffer, which tracing would record, so the traced copy holds the
    mask as a plain attribute (a constant of the trace) instead.
    """
    model = tclip.random_model(tclip.TINY_ARCH, seed=7).eval()
    model.load_state_dict(fp16_exact_tiny.state_dict())
    mask = model.attn_mask
    del model._buffers["attn_mask"]
    model.attn_mask = mask
    path = tmp_path / "RN-tiny-openai.pt"
    trace_model(model, batch_size=1).save(str(path))
    assert tclip.is_torchscript_archive(path)
    b = load_clip(ClipConfig(arch=tclip.TINY_ARCH, weights=str(path)))
    assert not b.is_random and b.weights_id.endswith(tclip.file_digest(path))
    _state_equal(b.model, fp16_exact_tiny)
    with pytest.raises(ClipWeightsMismatch, match=r"does not fit model\.clip\.arch='RN50'"):
        load_clip(ClipConfig(arch="RN50", weights=str(path)))  # the archive's tensors are the tiny CLIP's
    tokens = open_clip.tokenize(["point cloud of chair."])
    with torch.no_grad():
        _close(b.model.encode_text(tokens), fp16_exact_tiny.encode_text(tokens), rtol=1e-5)


def test_openai_format_state_dict_loads(fp16_exact_tiny, tmp_path):
    """OpenAI's key layout as a plain state dict (with the archive's extra int entries):
    the architecture is inferred from the shapes by open_clip's ``build_model_from_openai_state_dict``."""
    sd = {k: v for k, v in fp16_exact_tiny.state_dict().items() if k != "attn_mask"}
    sd.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    path = tmp_path / "openai_sd.pt"
    torch.save(sd, path)
    b = load_clip(ClipConfig(arch=tclip.TINY_ARCH, weights=str(path)))
    _state_equal(b.model, fp16_exact_tiny)
    rn50 = open_clip.create_model("RN50", device="meta").state_dict()  # the reference: open_clip's own RN50
    first = next(k for k, v in rn50.items() if k not in sd or sd[k].shape != v.shape)
    with pytest.raises(ClipWeightsMismatch, match=rf"model\.clip\.arch='RN50': tensor '{first}'"):
        load_clip(ClipConfig(arch="RN50", weights=str(path)))  # the file's own architecture is not RN50


def _rn50_openai_constants() -> dict[str, torch.Tensor]:
    """An OpenAI-format state dict of open_clip's RN50: floating tensor i holds (i % 7 + 1) / 8 everywhere (exact
    in fp16), stored with stride 0 so the file stays small."""
    shapes = open_clip.create_model("RN50", device="meta").state_dict()
    sd = {k: torch.full((), (i % 7 + 1) / 8, dtype=torch.float16).expand(v.shape)
          for i, (k, v) in enumerate(shapes.items()) if k != "attn_mask"}
    return {**sd, "input_resolution": torch.tensor(224)}


def test_open_clip_format_loads_exactly(tiny, tmp_path):
    ckpt = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "name": "tiny", "state_dict": tiny.model.state_dict()}, ckpt)
    b = load_clip(ClipConfig(arch=tclip.TINY_ARCH, weights=str(ckpt)))
    _state_equal(b.model, tiny.model)
    assert not b.is_random and "random" not in b.describe().lower()
    bare = tmp_path / "bare.pth"
    torch.save(tiny.model.state_dict(), bare)
    _state_equal(load_clip(ClipConfig(arch=tclip.TINY_ARCH, weights=str(bare))).model, tiny.model)


class _NotATensor:
    pass


def test_missing_and_corrupt_files_give_clear_errors(tmp_path):
    missing = tmp_path / "nowhere" / "RN50.pt"
    with pytest.raises(ClipWeightsError, match=str(missing)):
        load_clip(ClipConfig(weights=str(missing)))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(os.urandom(4096))
    with pytest.raises(ClipWeightsError, match="cannot read a CLIP checkpoint"):
        load_clip(ClipConfig(weights=str(corrupt)))
    # a pickle with arbitrary objects is refused: state dicts are read with weights_only=True
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": {"x": _NotATensor()}}, unsafe)
    with pytest.raises(ClipWeightsError, match=str(unsafe)):
        load_clip(ClipConfig(weights=str(unsafe)))
    not_clip = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(2)}, not_clip)
    with pytest.raises(ClipWeightsError, match="not a ResNet CLIP state dict"):
        load_clip(ClipConfig(weights=str(not_clip)))


def test_pretrained_tag_is_never_downloaded(tmp_path):
    if Path("~/.cache/clip/RN50.pt").expanduser().is_file():
        pytest.skip("this machine has OpenAI's RN50.pt cached")
    with pytest.raises(ClipWeightsError) as e:
        load_clip(ClipConfig(arch="RN50", weights="openai", cache_dir=str(tmp_path)))
    msg = str(e.value)
    assert "Looked in" in msg and str(tmp_path) in msg and "model.clip.weights=/path/to/RN50.pt" in msg
    with pytest.raises(ClipWeightsError, match="not a file and not an open_clip pretrained tag"):
        load_clip(ClipConfig(arch="RN50", weights="no-such-tag"))


def test_cached_tag_file_is_used(fp16_exact_tiny, tmp_path):
    """A tag resolves to the file open_clip would have downloaded, when it is already in the cache dir; the file
    must hold the tag's architecture (here RN50, written in OpenAI's format with known constant tensors)."""
    cached = tmp_path / os.path.basename(open_clip.get_pretrained_cfg("RN50", "yfcc15m")["url"])
    clip_cfg = ClipConfig(arch="RN50", weights="yfcc15m", cache_dir=str(tmp_path))
    torch.save({**fp16_exact_tiny.state_dict(), "input_resolution": torch.tensor(224)}, cached)
    with pytest.raises(ClipWeightsMismatch, match=rf"{cached}.*model\.clip\.arch='RN50'"):
        load_clip(clip_cfg)  # found, read, and refused: the tiny CLIP is not RN50
    sd = _rn50_openai_constants()
    torch.save(sd, cached)
    b = load_clip(clip_cfg)
    assert b.extra["resolved_path"] == str(cached)
    loaded = b.model.state_dict()
    for k, v in sd.items():
        if k in loaded and loaded[k].is_floating_point():
            assert torch.equal(loaded[k], v.float()), k


# --------------------------------------------------------------------------- fixed text embeddings


def test_fixed_text_embeddings_match_encode_text_and_cache(tiny, tmp_path):
    names = ("chair", "table", "other furniture")
    fixed = FixedTextEmbeddings(tiny, names, "point cloud of {}.", cache_dir=tmp_path)
    with torch.no_grad():
        ref = tiny.model.encode_text(open_clip.tokenize([f"point cloud of {n}." for n in names]))
    assert fixed().shape == (3, tiny.embed_dim)
    _close(fixed(), ref, rtol=1e-6)
    assert not any(True for _ in fixed.parameters())
    files = list((tmp_path / "text").glob("*.npy"))
    assert len(files) == 1
    # a later process reads the disk cache: plant known values and clear the in-memory copy
    np.save(files[0], np.full((3, tiny.embed_dim), 3.0, dtype=np.float32))
    tclip._TEXT_MEMORY.clear()
    assert torch.equal(FixedTextEmbeddings(tiny, names, cache_dir=tmp_path)(), torch.full((3, tiny.embed_dim), 3.0))
    other = FixedTextEmbeddings(tiny, names, "a photo of a {}.", cache_dir=tmp_path)
    assert not torch.equal(other(), fixed())
    with pytest.raises(ValueError, match="template"):
        FixedTextEmbeddings(tiny, names, "no placeholder")


def test_pixel_cell_index_by_hand():
    # 240x320 image, 7x10 grid: pixel (v=0,u=0) -> 0; (v=31,u=33) -> cell (0,1); (v=239,u=319) -> (6,9)
    pixels = torch.tensor([0, 31 * 320 + 33, 239 * 320 + 319, 224 * 320 + 64])
    assert pixel_cell_index(pixels, 320, (7, 10), DenseImageEncoder.stride).tolist() == [0, 1, 69, 62]
