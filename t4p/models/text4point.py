"""Text4Point: the pre-training model (Sec. 3.3) and the semantic-segmentation fine-tuning model (Sec. 3.4).

Both share ``Text4Point3D`` (SR-UNet encoder -> FC_expand -> TQM -> aggregation -> SR-UNet decoder)
and a text path, under the same parameter names (``backbone.*``, ``text.*``), so a pre-training
checkpoint initialises the fine-tuning model by name. The frozen CLIP towers are never part of a
checkpoint (``trainable_state_dict``).

Switches: ``model.tqm`` (off = the plain SR-UNet34 baseline: no FC_expand, no TQM, no text unless
the auxiliary loss needs it), ``model.text_source`` (``clip`` | ``random``), ``model.prompt_learning``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from t4p.config import Config, ModelConfig, task_traits
from t4p.models.clip import DenseImageEncoder, clip_cache_root
from t4p.models.decoder_2d import Decoder2D
from t4p.models.feature_cache import FeatureCache
from t4p.models.heads import SegHead
from t4p.models.prompt import make_text_path
from t4p.models.sr_unet import SRUNet
from t4p.models.tqm import TextQueryingModule
from t4p.sparse import make_backend


@dataclass
class Out3D:
    h3d: object  # SparseTensor at stride 16, enc_planes[-1] channels (before aggregation)
    h3d_hat: torch.Tensor | None  # (n, d) FC_expand(h3D), Eq. 4
    z3d: torch.Tensor  # (M, dec_planes[-1]) rows aligned with the input voxels, Eq. 12


class Text4Point3D(nn.Module):
    """The 3D part: SR-UNet with FC_expand and the TQM between its encoder and decoder."""

    def __init__(self, model_cfg: ModelConfig, embed_dim: int, expand: bool) -> None:
        super().__init__()
        self.unet = SRUNet(model_cfg, model_cfg.in_channels)
        width = model_cfg.enc_planes[-1]
        self.fc_expand = nn.Linear(width, embed_dim) if expand or model_cfg.tqm else None  # Eq. 4
        self.tqm = (
            TextQueryingModule(
                embed_dim,
                width,
                heads=model_cfg.tqm_heads,
                mlp_ratio=model_cfg.tqm_mlp_ratio,
                alpha_init=model_cfg.tqm_alpha_init,
                beta_init=model_cfg.tqm_beta_init,
            )
            if model_cfg.tqm
            else None
        )

    def forward(self, x, text: torch.Tensor | None) -> Out3D:
        h3d, skips = self.unet.encode(x)  # h3d.feats (n, d')
        h3d_hat = self.fc_expand(h3d.feats) if self.fc_expand is not None else None  # (n, d)
        h_in = h3d
        if self.tqm is not None:
            h_in = h3d.with_feats(self.tqm(h3d.feats, h3d_hat, text))  # (n, d'), Eq. 5-11
        z3d = self.unet.decode(h_in, skips)  # stride 1, (M, C), Eq. 12
        return Out3D(h3d=h3d, h3d_hat=h3d_hat, z3d=z3d.feats)


def needs_text(cfg: Config) -> bool:
    """The text path exists when the TQM queries it or the auxiliary loss scores against it."""
    return cfg.model.tqm or (task_traits(cfg).fine_tuning and cfg.loss.aux)


def make_sparse_input(backend, coords: torch.Tensor, feats: torch.Tensor):
    return backend.tensor(coords, feats)


@dataclass
class PretrainOutput:
    h2d: torch.Tensor  # (B, d, h, w) frozen CLIP dense features, Eq. 1
    z2d: torch.Tensor  # (B, C, H, W) Eq. 13
    depth: torch.Tensor  # (B, 1, H, W) predicted depth (App. C)
    out3d: Out3D
    z3d: torch.Tensor  # (M, C) decoder feature projected to the 2D decoder's width


class Text4PointPretrain(nn.Module):
    """Frozen CLIP image encoder + 2D decoder; SR-UNet + FC_expand + TQM; text embeddings t (K, d)."""

    def __init__(self, cfg: Config, bundle, class_names: list[str]) -> None:
        super().__init__()
        m = cfg.model
        self.cfg = cfg
        self.backend = make_backend(m.sparse_backend)
        d = bundle.embed_dim
        self.image_encoder = DenseImageEncoder(bundle, m.clip.dense_mode, fp16=m.clip.fp16)
        self.feature_cache = None
        if m.clip.feature_cache:  # the frozen encoder is deterministic: encode each frame once
            self.feature_cache = FeatureCache(clip_cache_root(m.clip), self.image_encoder.cache_id)
        self.decoder_2d = Decoder2D(d, m.decoder_2d_channels, stride=self.image_encoder.stride)
        self.text = make_text_path(m, bundle, class_names) if needs_text(cfg) else None
        self.backbone = Text4Point3D(m, d, expand=True)
        c3d = m.dec_planes[-1]
        self.proj_3d = nn.Linear(c3d, m.decoder_2d_channels) if c3d != m.decoder_2d_channels else None

    def forward(self, batch) -> PretrainOutput:
        with torch.no_grad():
            h2d = self.encode_images(batch)  # (B, d, h, w), frozen
        size = (batch.images.shape[2], batch.images.shape[3])
        z2d, depth = self.decoder_2d(h2d.float(), out_size=size)  # (B, C, H, W), (B, 1, H, W)
        text = self.text() if self.text is not None else None  # (K, d)
        out3d = self.backbone(make_sparse_input(self.backend, batch.coords, batch.feats), text)
        z3d = self.proj_3d(out3d.z3d) if self.proj_3d is not None else out3d.z3d  # (M, C)
        return PretrainOutput(h2d=h2d.float(), z2d=z2d, depth=depth, out3d=out3d, z3d=z3d)

    def encode_images(self, batch) -> torch.Tensor:
        if self.feature_cache is None:
            return self.image_encoder(batch.images)
        return self.feature_cache.get_or_compute(batch.frame_ids, batch.images, self.image_encoder)


def build_finetune_3d(cfg: Config, bundle, class_names: list[str], owner: str):
    """The fine-tuning 3D part every task head sits on: (sparse backend, text path or None, backbone).

    Parameter names (`text.*`, `backbone.*`) are shared by all tasks, so a pre-training checkpoint
    transfers by name to segmentation, instances and detection alike.
    """
    m = cfg.model
    with_text = needs_text(cfg)
    if with_text and bundle is None:
        raise ValueError(f"{owner}: model.tqm or loss.aux needs text embeddings; no CLIP bundle given")
    d = bundle.embed_dim if bundle is not None else 0
    text = make_text_path(m, bundle, class_names) if with_text else None
    return make_backend(m.sparse_backend), text, Text4Point3D(m, d, expand=cfg.loss.aux)


@dataclass
class SegOutput:
    logits: torch.Tensor  # (M, K') per voxel
    out3d: Out3D
    text: torch.Tensor | None  # (K', d)


class Text4PointSeg(nn.Module):
    """Fine-tuning model for semantic segmentation: the 3D part + the text path + a linear head."""

    def __init__(self, cfg: Config, bundle, class_names: list[str]) -> None:
        super().__init__()
        self.cfg = cfg
        self.backend, self.text, self.backbone = build_finetune_3d(cfg, bundle, class_names, "Text4PointSeg")
        self.head = SegHead(cfg.model.dec_planes[-1], len(class_names))

    def forward(self, batch) -> SegOutput:
        text = self.text() if self.text is not None else None  # (K', d)
        out3d = self.backbone(make_sparse_input(self.backend, batch.coords, batch.feats), text)
        return SegOutput(logits=self.head(out3d.z3d), out3d=out3d, text=text)


def frozen_tensor_ids(bundle) -> set[int]:
    """Storage pointers of the frozen CLIP model's parameters and buffers."""
    if bundle is None:
        return set()
    ptrs = {p.data_ptr() for p in bundle.model.parameters()}
    ptrs |= {b.data_ptr() for b in bundle.model.buffers()}
    return ptrs


def trainable_state_dict(model: nn.Module, frozen_ids: set[int]) -> dict[str, torch.Tensor]:
    """The model's state without the frozen CLIP towers (they come from the CLIP weights, not checkpoints)."""
    return {k: v for k, v in model.state_dict().items() if v.data_ptr() not in frozen_ids or v.numel() == 0}
