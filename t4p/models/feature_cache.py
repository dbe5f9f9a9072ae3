"""Frozen CLIP dense features cached per frame, computed once for all epochs and trials.

The image encoder is frozen and deterministic, so a frame's (d, h, w) features depend only on
the weights, the dense mode, the frame and its resolution. ``FeatureCache(root, weights_id)``
stores them as fp16 in ``.npz`` files under ``root/<weights_id>/<H>x<W>/`` (atomic writes: a temp
file renamed into place, so concurrent trials never read half a file). Pass
``DenseImageEncoder.cache_id`` (weights id + dense mode) as ``weights_id``.

Each entry also stores a fingerprint (sha1) of the input pixels it was computed from; an entry
whose fingerprint differs (two datasets reusing a frame id, a regenerated synthetic scene, an
augmented image) is recomputed and overwritten, never served stale. Augmented images therefore
get no benefit from the cache (but no disk growth either): cache unaugmented frames.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch

from t4p.io import atomic_path

log = logging.getLogger(__name__)


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` through ``t4p.io.atomic_path``: readers never see half a file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, allow_pickle=True, **arrays)  # numpy's default, spelled out: else its stubs match **arrays to it


def fingerprint(image: torch.Tensor) -> str:
    """sha1 of one image's pixels (any device): identifies what the cached features were computed from."""
    return hashlib.sha1(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


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
        return self.root / f"{size[0]}x{size[1]}" / f"{_safe_name(frame_id)}.npz"

    def get(self, frame_id: str, size: tuple[int, int], fp: str | None = None) -> torch.Tensor | None:
        """(d, h, w) float16, or None if absent, unreadable or computed from other pixels than ``fp``."""
        p = self.path(frame_id, size)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                if fp is not None and str(z["fp"]) != fp:
                    log.info("feature cache: %s was computed from other pixels; recomputing", p)
                    return None
                return torch.from_numpy(z["feats"])
        except (ValueError, OSError, EOFError, KeyError) as e:
            log.warning("feature cache: %s unreadable (%s); recomputing", p, e)
            return None

    def put(self, frame_id: str, size: tuple[int, int], feats: torch.Tensor, fp: str = "") -> None:
        """Store one frame's (d, h, w) features as fp16 with the fingerprint of its pixels."""
        feats16 = feats.detach().to("cpu", torch.float16).numpy()
        atomic_save_npz(self.path(frame_id, size), feats=feats16, fp=np.array(fp))

    def get_or_compute(self, frame_ids: Sequence[str], images: torch.Tensor,
                       encode: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, d, h, w) float32 on the images' device; encodes only the misses."""
        size = (int(images.shape[2]), int(images.shape[3]))
        fps = [fingerprint(img) for img in images]
        found = [self.get(f, size, fp) for f, fp in zip(frame_ids, fps)]
        missing = [i for i, t in enumerate(found) if t is None]
        self.hits += len(frame_ids) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = encode(images[missing])  # (B_miss, d, h, w)
            for j, i in enumerate(missing):
                self.put(frame_ids[i], size, computed[j], fps[i])
                found[i] = computed[j].to("cpu", torch.float16)
        # fp16 storage: a frame read from disk and a fresh one give identical values
        frames = cast("list[torch.Tensor]", found)  # every miss was filled in just above
        return torch.stack(frames).to(images.device, torch.float32)  # (B, d, h, w)

    def bytes_per_frame(self, size: tuple[int, int] | None = None) -> float:
        """Mean file size of the cached frames (of one input resolution if given)."""
        folder = self.root / f"{size[0]}x{size[1]}" if size else self.root
        files = list(folder.rglob("*.npz"))
        return sum(f.stat().st_size for f in files) / max(1, len(files))
