"""Frozen CLIP dense features cached per frame, computed once for all epochs and trials.

The image encoder is frozen and deterministic, so a frame's (d, h, w) features depend only on
the weights, the dense mode, the frame and its resolution. ``FeatureCache(root, weights_id)``
stores them as fp16 ``.npy`` files under ``root/<weights_id>/<H>x<W>/`` (atomic writes: a temp
file renamed into place, so concurrent trials never read half a file). Pass
``DenseImageEncoder.cache_id`` (weights id + dense mode) as ``weights_id``.

Only cache frames whose pixels do not change between epochs (no photometric or geometric image
augmentation); the prepared RGB-D frames of pre-training are such frames.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from t4p.models.clip import atomic_save_npy

log = logging.getLogger(__name__)


def _safe_name(frame_id: str) -> str:
    """A file name for any frame id: readable part + short hash (so distinct ids never collide)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", frame_id)[-80:]
    return f"{readable}-{hashlib.sha1(frame_id.encode()).hexdigest()[:10]}"


class FeatureCache:
    """fp16 dense features keyed by (weights_id, frame id, input resolution)."""

    def __init__(self, root: str | Path, weights_id: str) -> None:
        if not weights_id or "/" in weights_id:
            raise ValueError(f"FeatureCache: weights_id {weights_id!r} must be a non-empty name without '/'")
        self.root = Path(root).expanduser() / weights_id
        self.hits = 0
        self.misses = 0

    def path(self, frame_id: str, size: tuple[int, int]) -> Path:
        return self.root / f"{size[0]}x{size[1]}" / f"{_safe_name(frame_id)}.npy"

    def get(self, frame_id: str, size: tuple[int, int]) -> torch.Tensor | None:
        """(d, h, w) float16 tensor, or None if not cached (or unreadable: then it is recomputed)."""
        p = self.path(frame_id, size)
        if not p.is_file():
            return None
        try:
            return torch.from_numpy(np.load(p, allow_pickle=False))
        except (ValueError, OSError, EOFError) as e:
            log.warning("feature cache: %s unreadable (%s); recomputing", p, e)
            return None

    def put(self, frame_id: str, size: tuple[int, int], feats: torch.Tensor) -> None:
        """Store one frame's (d, h, w) features as fp16."""
        atomic_save_npy(self.path(frame_id, size), feats.detach().to("cpu", torch.float16).numpy())

    def get_or_compute(self, frame_ids: Sequence[str], images: torch.Tensor,
                       encode: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, d, h, w) float32 on the images' device; encodes only the misses."""
        size = (int(images.shape[2]), int(images.shape[3]))
        found = [self.get(f, size) for f in frame_ids]
        missing = [i for i, t in enumerate(found) if t is None]
        self.hits += len(frame_ids) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = encode(images[missing])  # (B_miss, d, h, w)
            for j, i in enumerate(missing):
                self.put(frame_ids[i], size, computed[j])
                found[i] = computed[j].to("cpu", torch.float16)
        # fp16 storage: a frame read from disk and a fresh one give identical values
        return torch.stack(found).to(images.device, torch.float32)  # (B, d, h, w)

    def bytes_per_frame(self, size: tuple[int, int] | None = None) -> float:
        """Mean file size of the cached frames (of one input resolution if given)."""
        folder = self.root / f"{size[0]}x{size[1]}" if size else self.root
        files = list(folder.rglob("*.npy"))
        return sum(f.stat().st_size for f in files) / max(1, len(files))
