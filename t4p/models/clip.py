"""CLIP through open_clip: loading (never downloading), dense image features (Eq. 1), fixed text.

``model.clip.weights`` selects the weights:

- ``"random-tiny"`` (the embedded default): a small CLIP-architecture model (ModifiedResNet image
  tower with one bottleneck per stage, one-layer text transformer) with random weights drawn
  from a fixed seed, so every process builds the same model. It ignores ``model.clip.arch``.
  Every load logs "RANDOM WEIGHTS" at WARNING level and ``describe()`` says so.
- ``"random"``: open_clip's ``model.clip.arch`` (e.g. RN50) with seeded random weights; also labelled.
- a path to a file: OpenAI's TorchScript archive (read by open_clip's ``load_openai_model`` only),
  or a state dict (``torch.load(weights_only=True)``): an open_clip training checkpoint
  (``{"state_dict": ...}``) or a bare state dict for ``model.clip.arch``, which must fit the arch
  tensor for tensor (else ``ClipWeightsMismatch`` names the first missing or differently shaped
  tensor); or an OpenAI-format state dict (with OpenAI's ``input_resolution`` entry), whose
  architecture is inferred from the shapes by open_clip's ``build_model_from_openai_state_dict``
  (weights rounded to fp16 as OpenAI's are) and whose positional table must fit that resolution.
  The model an OpenAI archive or state dict builds must then be ``model.clip.arch`` tensor for tensor
  (a file missing a block would otherwise build a shallower model silently).
- anything else: an open_clip pretrained tag for ``model.clip.arch`` (``openai``, ``yfcc15m``, ...)
  resolved from the local caches only (``~/.cache/clip`` for URL downloads, the Hugging Face hub
  cache, ``model.clip.cache_dir``). Nothing is ever downloaded.

The image encoder is used densely (Eq. 1): the attention pool's multi-head self-attention runs
over the mean token and *all* positions of the last ResNet feature map and every position's
output is kept, (B, d, h, w). The pool's positional embedding (7x7+1 for 224 input) is
interpolated bicubically to the actual grid (as DenseCLIP does) and cached per grid size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, build_model_from_openai_state_dict
from open_clip.modified_resnet import ModifiedResNet
from torch import nn

from t4p.errors import UserError, brief_reason, first_tensor_mismatch
from t4p.io import save_npy

log = logging.getLogger(__name__)

TINY_ARCH = "t4p-tiny"
RANDOM_SEED = 20240601  # fixed: every process builds the same random CLIP
# The tiny CLIP: head_width 64 and text heads = width // 64 so that it survives open_clip's
# OpenAI-format loader (which infers heads that way); quick_gelu as OpenAI's models.
TINY_CFG: dict[str, Any] = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"layers": [1, 1, 1, 1], "width": 8, "head_width": 64, "image_size": 224},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1},
}
RANDOM_LABEL = "RANDOM WEIGHTS"
POS_KEY = "visual.attnpool.positional_embedding"  # (1 + grid^2, C): its size fixes the input resolution


class ClipWeightsError(UserError, FileNotFoundError):
    """CLIP weights are missing or unreadable, or ``model.clip.arch`` / a pretrained tag is unknown."""


class ClipWeightsMismatch(UserError, ValueError):
    """CLIP weights were read but do not fit the architecture: names the first tensor that differs."""


@dataclass
class ClipBundle:
    """A frozen open_clip CLIP model plus what caches and reports need to know about it."""

    model: CLIP
    is_random: bool
    embed_dim: int  # d: output width of the image attention pool and of the text projection
    weights_id: str  # stable id of the weights, for cache keys
    arch: str
    source: str  # what model.clip.weights said
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.arch == TINY_ARCH and self.is_random:
            return f"{RANDOM_LABEL} (tiny CLIP, not a trained model; seed {RANDOM_SEED}, d={self.embed_dim})"
        if self.is_random:
            return f"{RANDOM_LABEL} ({self.arch} architecture, not a trained model; seed {RANDOM_SEED})"
        return f"CLIP {self.arch} from {self.source} (weights {self.weights_id})"

    @property
    def context_length(self) -> int:
        return int(self.model.context_length)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """(K,) strings -> (K, context_length) int64 token ids (CLIP's BPE tokenizer)."""
        return open_clip.tokenize(texts, context_length=self.context_length)


# --------------------------------------------------------------------------- building models


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def freeze(model: ModuleT) -> ModuleT:
    """No gradients and eval mode (BatchNorm statistics and dropout fixed)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def _tiny_model() -> CLIP:
    cfg = TINY_CFG
    return CLIP(
        embed_dim=cfg["embed_dim"],
        vision_cfg=CLIPVisionCfg(**cfg["vision_cfg"]),
        text_cfg=CLIPTextCfg(**cfg["text_cfg"]),
        quick_gelu=cfg["quick_gelu"],
    )


def build_architecture(arch: str, quick_gelu: bool = False, device: str = "cpu") -> CLIP:
    """An open_clip CLIP of ``arch`` (or the tiny one) with open_clip's own random initialisation.

    ``device="meta"``: tensors without data (shapes only, no time spent on the initialisation).
    """
    if arch == TINY_ARCH:
        with torch.device(device):
            return _tiny_model()
    if arch not in open_clip.list_models():
        raise ClipWeightsError(
            f"model.clip.arch={arch!r}: not an open_clip architecture; expected {TINY_ARCH!r} or one of "
            f"{[m for m in open_clip.list_models() if m.startswith('RN')]} (ResNet CLIPs)"
        )
    model = open_clip.create_model(arch, force_quick_gelu=quick_gelu, device=device)
    if not isinstance(model, CLIP) or not hasattr(model.visual, "attnpool"):
        raise ClipWeightsError(f"model.clip.arch={arch!r}: Eq. 1 needs a ResNet CLIP with an attention pool")
    return model


def random_model(arch: str, seed: int = RANDOM_SEED) -> CLIP:
    """Deterministic random weights: the same seed gives the same model in every process.

    The image tower's BatchNorm statistics are then calibrated on noise images (weights stay random):
    with open_clip's initialisation and identity statistics the activations shrink ~10^4-fold through
    the ResNet, so the attention pool returns the same vector at every position and a pre-training
    against it has nothing to align with (L_e cannot move). Calibrated, positions differ.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_architecture(arch)
        calibrate_batchnorm(model.visual, model.visual.image_size)
    return model


@torch.no_grad()
def calibrate_batchnorm(visual: nn.Module, image_size: int | tuple[int, int], n_images: int = 8) -> None:
    """Set every BatchNorm's running mean/var to its batch statistics over smooth noise images."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    coarse = torch.randn(n_images, 3, max(size[0] // 16, 1), max(size[1] // 16, 1))
    images = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)  # (n, 3, H, W), smooth
    images = images + 0.25 * torch.randn_like(images)  # plus fine texture
    norms = [m for m in visual.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batch
    was_training = visual.training
    visual.train()
    visual(images)
    visual.train(was_training)
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum


def _embed_dim(model: CLIP) -> int:
    return int(model.visual.attnpool.c_proj.out_features)


# --------------------------------------------------------------------------- weights from disk


def file_digest(path: str | Path, n_hex: int = 16) -> str:
    """sha256 of a file's content (chunked), truncated: the weights part of every cache key."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:n_hex]


def is_torchscript_archive(path: str | Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder and ``constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Only tensors (``weights_only=True``); unwraps ``{"state_dict": ...}`` and DDP's ``module.``."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # optional dependency: only for .safetensors weights

        obj: Any = load_file(str(path))
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__
        raise ClipWeightsError(f"{path}: expected a CLIP state dict (name -> tensor), got {kind}")
    if next(iter(obj)).startswith("module."):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    if POS_KEY not in obj:
        raise ClipWeightsError(
            f"{path}: no {POS_KEY!r} key: not a ResNet CLIP state dict "
            f"(keys start with {sorted(obj)[:5]})"
        )
    return obj


T = TypeVar("T")


def _reading(path: Path, read: Callable[[], T]) -> T:
    """``read()`` of the weights file ``path``; whatever a damaged file makes the reader raise becomes a
    ``ClipWeightsError`` naming the file."""
    try:
        return read()
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - torch / zip / pickle / open_clip readers raise many types for a bad file
        raise ClipWeightsError(
            f"model.clip.weights={str(path)!r}: cannot read a CLIP checkpoint from this file "
            f"({type(e).__name__}: {brief_reason(e)})"
        ) from e


def check_weights_fit(path: Path, own: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], what: str) -> None:
    """A ``ClipWeightsMismatch`` naming the first tensor of ``own`` (the architecture's state dict) that ``sd``
    lacks or has in another shape, else the first one ``sd`` has beyond it: weights never silently build
    another architecture."""
    mismatch = first_tensor_mismatch(own, sd)
    if mismatch:
        raise ClipWeightsMismatch(f"model.clip.weights={str(path)!r} does not fit {what}: {mismatch}")


def _openai_format_model(path: Path, sd: dict[str, torch.Tensor]) -> CLIP:
    """OpenAI's layout as a state dict: the architecture comes from the tensors (open_clip's
    ``build_model_from_openai_state_dict``: QuickGELU, weights rounded to fp16 as OpenAI's are), and the
    attention pool's positional table must fit the input resolution the file declares."""
    size = int(sd["input_resolution"])
    grid = size // DenseImageEncoder.stride
    pos = sd[POS_KEY]
    check_weights_fit(path, {POS_KEY: torch.empty(grid * grid + 1, pos.shape[1])}, {POS_KEY: pos},
                      f"its own input_resolution={size}")
    return _reading(path, lambda: build_model_from_openai_state_dict(dict(sd), quick_gelu=True)).float()


def load_weights_file(path: str | Path, arch: str, quick_gelu: bool = False) -> CLIP:
    """A CLIP model from a checkpoint file (see the module docstring for the formats).

    The weights must fit ``arch`` tensor for tensor (``ClipWeightsMismatch`` names the first that does not):
    a state dict in open_clip's layout before it is loaded; OpenAI's archive and OpenAI-format state dicts,
    whose loader infers the architecture from the tensors (a missing block would build a shallower model),
    once built.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ClipWeightsError(
            f"model.clip.weights={str(path)!r}: no such file. Supply a CLIP checkpoint "
            f"(OpenAI's RN50.pt or an open_clip state dict) or use model.clip.weights=random-tiny"
        )
    if _reading(path, lambda: is_torchscript_archive(path)):
        # OpenAI's archive: only open_clip's loader reads it (rebuilds a plain nn.Module).
        model = _reading(path, lambda: open_clip.load_openai_model(str(path), precision="fp32", device="cpu"))
        return _fitting_arch(path, model, arch)
    sd = _reading(path, lambda: _read_state_dict(path))
    sd.pop("attn_mask", None)  # a constant buffer the model builds itself
    if "input_resolution" in sd:
        return _fitting_arch(path, _openai_format_model(path, sd), arch)
    model = build_architecture(arch, quick_gelu=quick_gelu)
    check_weights_fit(path, model.state_dict(), sd, f"model.clip.arch={arch!r}")
    model.load_state_dict(sd)
    return model


def _fitting_arch(path: Path, model: CLIP, arch: str) -> CLIP:
    """``model`` (built from the shapes of the weights in ``path``) after checking it is ``arch``, tensor for
    tensor."""
    own = build_architecture(arch, device="meta").state_dict()  # shapes only
    check_weights_fit(path, own, model.state_dict(), f"model.clip.arch={arch!r}")
    return model


def _tag_candidates(arch: str, tag: str, cache_dir: str) -> list[tuple[Path, str]]:
    """Where a pretrained tag's file would be if the user has it: (path, "openai"|"open_clip")."""
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    out: list[tuple[Path, str]] = []
    url = cfg.get("url", "")
    if url:
        kind = "openai" if "openaipublic" in url else "open_clip"
        for d in [cache_dir, os.path.expanduser("~/.cache/clip")]:
            if d:
                out.append((Path(d) / os.path.basename(url), kind))
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import constants, try_to_load_from_cache  # local lookups only, no network
        except ImportError:
            return out
        repo, filename = (hub.rstrip("/"), "") if hub.endswith("/") else os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for d in [cache_dir, constants.HF_HUB_CACHE]:
            for name in names if d else []:
                hit = try_to_load_from_cache(repo, name, cache_dir=d)
                shown = Path(hit) if isinstance(hit, str) else Path(f"{d} (hf-hub {repo}/{name})")
                out.append((shown, "open_clip"))
    return out


def load_pretrained_tag(arch: str, tag: str, cache_dir: str = "") -> tuple[CLIP, Path]:
    """Resolve an open_clip pretrained tag from local caches only; never downloads."""
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise ClipWeightsError(
            f"model.clip.weights={tag!r}: not a file and not an open_clip pretrained tag for "
            f"model.clip.arch={arch!r} (tags: {open_clip.list_pretrained_tags_by_model(arch)}); "
            f"use a checkpoint path, 'random' or 'random-tiny'"
        )
    looked = []
    for path, kind in _tag_candidates(arch, tag, cache_dir):
        looked.append(str(path))
        if path.is_file():
            log.info("CLIP %s/%s: using cached weights %s", arch, tag, path)
            if kind == "openai" or is_torchscript_archive(path):
                return load_weights_file(path, arch), path
            return load_weights_file(path, arch, quick_gelu=bool(cfg.get("quick_gelu", False))), path
    raise ClipWeightsError(
        f"model.clip.weights={tag!r}: CLIP {arch} weights for tag {tag!r} are not on this machine and "
        f"nothing is downloaded at run time. Looked in: {looked}. Supply the file with "
        f"model.clip.weights=/path/to/{arch}.pt (OpenAI's archive or an open_clip state dict)"
    )


def _looks_like_path(weights: str) -> bool:
    return os.sep in weights or weights.startswith("~") or Path(weights).suffix in (
        ".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def load_clip(clip_cfg: Any) -> ClipBundle:
    """``model.clip`` -> a frozen CLIP bundle. Random weights are logged at WARNING level."""
    weights, arch = clip_cfg.weights, clip_cfg.arch
    extra: dict[str, Any] = {}
    if weights in ("random-tiny", "random"):
        arch = TINY_ARCH if weights == "random-tiny" else arch
        model = random_model(arch)
        cfg_hash = hashlib.sha256(json.dumps(TINY_CFG if arch == TINY_ARCH else arch).encode()).hexdigest()
        weights_id = f"random-{arch}-{RANDOM_SEED}-{cfg_hash[:8]}-bncal"  # BN calibrated on noise
        bundle = ClipBundle(freeze(model), True, _embed_dim(model), weights_id, arch, weights)
        log.warning("CLIP image/text encoders: %s", bundle.describe())
        return bundle
    if _looks_like_path(weights) or Path(weights).expanduser().is_file():
        path = Path(weights).expanduser()
        model = load_weights_file(path, arch)
    else:
        model, path = load_pretrained_tag(arch, weights, getattr(clip_cfg, "cache_dir", ""))
        extra["resolved_path"] = str(path)
    if not hasattr(model.visual, "attnpool"):
        raise ClipWeightsError(f"model.clip.weights={weights!r}: not a ResNet CLIP (no attention pool)")
    weights_id = f"{arch}-{file_digest(path)}"
    bundle = ClipBundle(freeze(model), False, _embed_dim(model), weights_id, arch, weights, extra)
    log.info("CLIP: %s", bundle.describe())
    return bundle


def clip_cache_root(clip_cfg: Any) -> Path:
    """``model.clip.cache_dir`` with its default: where text and dense feature caches live."""
    return Path(clip_cfg.cache_dir or "~/.cache/t4p/clip").expanduser()


# --------------------------------------------------------------------------- dense image features


def interpolate_pos_embed(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(1 + s*s, C) positional table -> (1 + h*w, C): bicubic over the s x s grid, global row kept."""
    h, w = grid
    n = pos.shape[0] - 1
    s = int(round(n**0.5))
    if s * s != n:
        raise ValueError(f"attention pool positional embedding has {n} grid rows: not a square")
    if (h, w) == (s, s):
        return pos
    spatial = pos[1:].reshape(s, s, -1).permute(2, 0, 1)[None].float()  # (1, C, s, s)
    spatial = F.interpolate(spatial, size=(h, w), mode="bicubic", align_corners=False)  # (1, C, h, w)
    spatial = spatial[0].permute(1, 2, 0).reshape(h * w, -1).to(pos.dtype)  # (h*w, C)
    return torch.cat([pos[:1], spatial], dim=0)


class DenseImageEncoder(nn.Module):
    """Frozen ResNet CLIP image tower used densely (Eq. 1): ``(B, 3, H, W) -> (B, d, h, w)``.

    ``mode="attnpool"`` (the paper): [h, h_g] = MSA(Concat(x, x_g)) with the pool's q/k/v/c_proj
    over all h*w positions plus the mean token x_g, positional embedding interpolated to (h, w).
    ``mode="maskclip"``: MaskCLIP's value-only shortcut, c_proj(v_proj(x)) per position (no
    positional embedding, no attention).

    The frozen CLIP tower is held outside the module tree: it is in no ``state_dict`` (checkpoints
    stay small), in no ``parameters()`` (no optimiser or DDP sees it) and is always in eval mode,
    but it follows ``.to()``/``.cuda()``.
    """

    stride = 32  # ModifiedResNet: stem /4, layer2-4 /2 each, all by flooring pools (t4p.losses.pixel_cell_index)

    def __init__(self, bundle: ClipBundle, mode: Literal["attnpool", "maskclip"] = "attnpool",
                 fp16: bool = True) -> None:
        super().__init__()
        if mode not in ("attnpool", "maskclip"):
            raise ValueError(f"model.clip.dense_mode={mode!r}: expected 'attnpool' or 'maskclip'")
        # not a submodule: see the class docstring; a ResNet image tower (load_clip checks the attention pool)
        self._frozen: tuple[ModifiedResNet] = (freeze(bundle.model.visual),)
        self.mode = mode
        self.fp16 = fp16  # only on CUDA
        self.embed_dim = bundle.embed_dim
        self.cache_id = f"{bundle.weights_id}-{mode}"  # key for FeatureCache
        self._pos_cache: dict[tuple, torch.Tensor] = {}

    @property
    def visual(self) -> ModifiedResNet:
        return self._frozen[0]

    def _apply(self, fn, recurse=True):  # .to(), .cuda(), .half() also move the frozen tower
        self._frozen[0]._apply(fn, recurse)
        self._pos_cache.clear()
        return super()._apply(fn, recurse)

    def pos_embed(self, grid: tuple[int, int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(1 + h*w, C) interpolated table, computed once per grid size, device and dtype."""
        key = (grid, device, dtype)
        if key not in self._pos_cache:
            pos = self.visual.attnpool.positional_embedding.detach()
            self._pos_cache[key] = interpolate_pos_embed(pos, grid).to(device=device, dtype=dtype)
        return self._pos_cache[key]

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, h, w) last ResNet stage (C = 2048 for RN50, stride 32)."""
        v = self.visual
        x = v.stem(images.to(v.conv1.weight.dtype))
        return v.layer4(v.layer3(v.layer2(v.layer1(x))))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 1 over (B, C, h, w) -> (B, 1 + h*w, d): token 0 is h_g, tokens 1.. are h (row-major)."""
        pool = self.visual.attnpool
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, h*w, C)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)  # (B, 1+h*w, C)
        tokens = tokens + self.pos_embed((h, w), x.device, tokens.dtype)[None]
        heads = pool.num_heads

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, L, C) -> (B, heads, L, C/heads)
            return t.reshape(b, -1, heads, c // heads).transpose(1, 2)

        q, k, v = (split(proj(tokens)) for proj in (pool.q_proj, pool.k_proj, pool.v_proj))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, 1+h*w, C/heads)
        out = out.transpose(1, 2).reshape(b, -1, c)  # (B, 1+h*w, C)
        return pool.c_proj(out)  # (B, 1+h*w, d)

    def value_shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """MaskCLIP: (B, C, h, w) -> (B, h*w, d) = c_proj(v_proj(x)) per position."""
        pool = self.visual.attnpool
        return pool.c_proj(pool.v_proj(x.flatten(2).transpose(1, 2)))

    @torch.no_grad()
    def forward_with_global(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> dense (B, d, h, w) float32, global (B, d) float32 (open_clip's attnpool output)."""
        use_fp16 = self.fp16 and images.is_cuda
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_fp16):
            x = self.feature_map(images)  # (B, C, h, w)
            tokens = self.attend(x)  # (B, 1+h*w, d)
            dense = self.value_shortcut(x) if self.mode == "maskclip" else tokens[:, 1:]
        b, _, h, w = x.shape
        dense = dense.float().transpose(1, 2).reshape(b, -1, h, w)  # (B, d, h, w)
        return dense, tokens[:, 0].float()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised with CLIP's mean/std -> (B, d, h, w), h = ceil-free H // 32."""
        use_fp16 = self.fp16 and images.is_cuda
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_fp16):
            x = self.feature_map(images)  # (B, C, h, w)
            dense = self.value_shortcut(x) if self.mode == "maskclip" else self.attend(x)[:, 1:]
        b, _, h, w = x.shape
        return dense.float().transpose(1, 2).reshape(b, -1, h, w)  # (B, d, h, w)


# --------------------------------------------------------------------------- fixed text embeddings

_TEXT_MEMORY: dict[tuple[str, tuple[str, ...], str], torch.Tensor] = {}


def _text_cache_file(cache_dir: str | Path, weights_id: str, names: tuple[str, ...], template: str) -> Path:
    key = hashlib.sha256(json.dumps([weights_id, list(names), template]).encode()).hexdigest()[:20]
    return Path(cache_dir).expanduser() / "text" / f"{weights_id}-{key}.npy"


@torch.no_grad()
def encode_prompts(bundle: ClipBundle, prompts: list[str]) -> torch.Tensor:
    """(K,) prompt strings -> (K, d) float32 with open_clip's own ``encode_text`` (not normalised)."""
    device = next(bundle.model.parameters()).device
    return bundle.model.encode_text(bundle.tokenize(prompts).to(device)).float().cpu()


class FixedTextEmbeddings(nn.Module):
    """``forward() -> (K, d)``: frozen CLIP text features of ``template.format(name)``, computed once.

    Reused from an in-process dict and, with ``cache_dir``, from ``<cache_dir>/text/*.npy``, keyed
    by (weights_id, names, template).
    """

    embeddings: torch.Tensor  # buffer (K, d), registered in __init__

    def __init__(self, bundle: ClipBundle, names: tuple[str, ...] | list[str],
                 template: str = "point cloud of {}.", cache_dir: str | Path | None = None) -> None:
        super().__init__()
        if "{}" not in template:
            raise ValueError(f"model.clip.template={template!r}: must contain '{{}}' for the class name")
        names = tuple(names)
        self.names, self.template = names, template
        key = (bundle.weights_id, names, template)
        emb = _TEXT_MEMORY.get(key)
        path = _text_cache_file(cache_dir, *key) if cache_dir else None
        if emb is None and path is not None and path.is_file():
            emb = torch.from_numpy(np.load(path))
        if emb is None:
            emb = encode_prompts(bundle, [template.format(n) for n in names])  # (K, d)
            if path is not None:
                save_npy(path, emb.numpy())
        _TEXT_MEMORY[key] = emb
        self.register_buffer("embeddings", emb.clone(), persistent=False)  # (K, d)

    def forward(self) -> torch.Tensor:
        return self.embeddings

