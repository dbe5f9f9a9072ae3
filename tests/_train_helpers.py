"""Shared helpers of the training tests: tiny, fast versions of the smoke recipes."""

from __future__ import annotations

from pathlib import Path

from t4p.config import Config
from t4p.recipes import get_recipe

# Even smaller than the smoke recipes: a few steps, no feature cache outside the test folder.
TINY = ("train.log_every=1", "train.num_threads=1", "data.loader_workers=0")


def tiny_cfg(recipe: str, out_dir: Path, *overrides: str) -> Config:
    return get_recipe(
        recipe,
        [*TINY, f"train.out_dir={out_dir}", f"model.clip.cache_dir={out_dir / 'clip_cache'}", *overrides],
    )
