"""Learnable text paths: CoOp prompt learning and the Table 6 random-embedding control.

Both follow the text path contract ``forward() -> (K, d)`` (like ``FixedTextEmbeddings``).

CoOp (Zhou et al.): the prompt is [SOS][ctx_1 .. ctx_n][class tokens][.][EOT]; only the n context
vectors learn. Token embedding, transformer, final LayerNorm and projection stay frozen and the
feature is read at the end-of-text position, exactly as open_clip's ``encode_text`` does.

Initialisation from a phrase (``model.ctx_init``, e.g. "point cloud of"): the phrase's m token
embeddings fill the *last* m context slots (right next to the class name). If n_ctx > m the first
n_ctx - m slots are drawn from N(0, 0.02^2); if n_ctx < m only the phrase's last n_ctx tokens are
kept. With n_ctx == m and the template "<phrase> {}." the prompt learner at initialisation gives
exactly the fixed prompt's text features. ``ctx_init=""`` draws all slots from N(0, 0.02^2).
"""

from __future__ import annotations

import logging
from typing import cast

import open_clip
import torch
from open_clip.model import CLIP
from open_clip.transformer import Transformer, text_global_pool
from torch import nn

from t4p.models.clip import ClipBundle, FixedTextEmbeddings, clip_cache_root

log = logging.getLogger(__name__)

CTX_STD = 0.02  # CoOp's N(0, 0.02^2) context initialisation


def phrase_token_count(phrase: str) -> int:
    """Number of BPE tokens of a phrase (without SOS/EOT): EOT has the largest id."""
    if not phrase.strip():
        return 0
    return int(open_clip.tokenize([phrase], context_length=1024)[0].argmax()) - 1


class _FrozenTextTower(nn.Module):
    """The parts of an open_clip CLIP text tower after the token embedding (shared, frozen tensors)."""

    attn_mask: torch.Tensor | None  # buffer, registered in __init__

    def __init__(self, model: CLIP) -> None:
        super().__init__()
        self.transformer: Transformer = model.transformer
        self.ln_final: nn.Module = model.ln_final
        self.positional_embedding: nn.Parameter = model.positional_embedding  # (L, width) Parameter, shared
        proj = model.text_projection
        self.text_projection: nn.Parameter | nn.Linear | None = proj  # Parameter (width, d), nn.Linear or None
        # CLIP registers attn_mask as a buffer: a tensor, or None for a text tower without a causal mask
        self.register_buffer("attn_mask", cast("torch.Tensor | None", model.attn_mask), persistent=False)
        self.pool_type: str = model.text_pool_type
        self.eos_id: int | None = getattr(model, "text_eos_id", None)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Embedded prompts (K, L, width) + their token ids (K, L) -> (K, d); mirrors ``encode_text``."""
        cast_dtype = self.transformer.get_cast_dtype()
        x = x.to(cast_dtype) + self.positional_embedding.to(cast_dtype)  # (K, L, width)
        x = self.transformer(x, attn_mask=self.attn_mask)  # batch-first in and out (open_clip >= 2.2x)
        x = self.ln_final(x)  # (K, L, width)
        x = text_global_pool(x, tokens, self.pool_type, eos_token_id=self.eos_id)  # (K, width) at EOT
        if isinstance(self.text_projection, nn.Linear):
            x = self.text_projection(x)
        elif self.text_projection is not None:
            x = x @ self.text_projection  # (K, d)
        return x


class PromptLearner(nn.Module):
    """CoOp: ``forward() -> (K, d)`` with ``n_ctx`` learnable context vectors (the only parameter).

    The frozen text tower is not a submodule: ``state_dict`` holds only ``ctx``.
    """

    tokens: torch.Tensor  # buffers (K, L), (K, 1, width), (K, L - 1 - n_ctx, width), registered in __init__
    prefix: torch.Tensor
    suffix: torch.Tensor

    def __init__(self, bundle: ClipBundle, names: tuple[str, ...] | list[str], n_ctx: int = 8,
                 ctx_init: str = "point cloud of", seed: int | None = None) -> None:
        super().__init__()
        if n_ctx < 1:
            raise ValueError(f"model.n_ctx={n_ctx}: need at least one context vector")
        model = bundle.model
        self.names = tuple(names)
        self.n_ctx = n_ctx
        # frozen tower outside the module tree (no state_dict entries, no parameters); follows .to()
        self._frozen = (_FrozenTextTower(model).eval(),)
        placeholder = " ".join(["X"] * n_ctx)  # one BPE token each: reserves the n_ctx slots
        prompts = [f"{placeholder} {name}." for name in self.names]
        for p in prompts:
            if phrase_token_count(p) + 2 > bundle.context_length:
                raise ValueError(f"prompt {p!r} exceeds CLIP's {bundle.context_length}-token context")
        tokens = bundle.tokenize(prompts)  # (K, L)
        emb_layer = model.token_embedding
        with torch.no_grad():
            emb = emb_layer(tokens.to(emb_layer.weight.device)).float()  # (K, L, width)
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("prefix", emb[:, :1].clone(), persistent=False)  # (K, 1, width): SOS
        self.register_buffer("suffix", emb[:, 1 + n_ctx:].clone(), persistent=False)  # class, ".", EOT, pad
        self.ctx = nn.Parameter(self._init_ctx(bundle, ctx_init, emb.shape[-1], seed))  # (n_ctx, width)

    def _init_ctx(self, bundle: ClipBundle, ctx_init: str, width: int, seed: int | None) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        ctx = torch.randn(self.n_ctx, width, generator=gen) * CTX_STD  # (n_ctx, width) N(0, 0.02^2)
        m = phrase_token_count(ctx_init)
        if m == 0:
            return ctx
        ids = bundle.tokenize([ctx_init])[0, 1:1 + m]  # (m,) phrase tokens without SOS
        emb_layer = bundle.model.token_embedding
        with torch.no_grad():
            phrase = emb_layer(ids.to(emb_layer.weight.device)).float().cpu()  # (m, width)
        keep = min(m, self.n_ctx)
        ctx[self.n_ctx - keep:] = phrase[m - keep:]  # phrase right-aligned next to the class name
        if m != self.n_ctx:
            log.info("CoOp: ctx_init %r has %d tokens, n_ctx=%d: %s", ctx_init, m, self.n_ctx,
                     "first slots random" if m < self.n_ctx else "kept its last tokens")
        return ctx

    @property
    def text(self) -> _FrozenTextTower:
        return self._frozen[0]

    def _apply(self, fn, recurse=True):  # .to(), .cuda() also move the frozen tower
        self._frozen[0]._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def prompts(self) -> torch.Tensor:
        """(K, L, width) embedded prompts: [SOS][ctx][class . EOT pad]."""
        k = self.prefix.shape[0]
        ctx = self.ctx[None].expand(k, -1, -1).to(self.prefix.dtype)  # (K, n_ctx, width)
        return torch.cat([self.prefix, ctx, self.suffix], dim=1)

    def forward(self) -> torch.Tensor:
        return self.text(self.prompts(), self.tokens).float()  # (K, d)


class RandomEmbeddings(nn.Module):
    """Table 6 control: K x d learnable vectors in place of the CLIP text features."""

    def __init__(self, num_classes: int, dim: int, seed: int | None = None) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        # N(0, 1/d): unit expected norm, the scale of normalised CLIP features
        self.embeddings = nn.Parameter(torch.randn(num_classes, dim, generator=gen) / dim**0.5)  # (K, d)

    def forward(self) -> torch.Tensor:
        return self.embeddings


def make_text_path(model_cfg, bundle: ClipBundle, names: tuple[str, ...] | list[str],
                   seed: int | None = None) -> nn.Module:
    """``forward() -> (K, d)``: Table 6 random embeddings, CoOp prompts, or the fixed CLIP template.

    The one text path of every model; ``seed=None`` draws learnable initial values from torch's
    global generator (seeded per run), and fixed embeddings are cached under ``model.clip.cache_dir``.
    """
    if model_cfg.text_source == "random":
        return RandomEmbeddings(len(names), bundle.embed_dim, seed=seed)
    if model_cfg.prompt_learning:
        return PromptLearner(bundle, names, model_cfg.n_ctx, model_cfg.ctx_init, seed=seed)
    clip_cfg = model_cfg.clip
    return FixedTextEmbeddings(bundle, names, clip_cfg.template, cache_dir=clip_cache_root(clip_cfg))
