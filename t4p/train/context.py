"""What a training run gets from whoever runs it (``RunContextProtocol``), and the default single-process
``RunContext`` of ``t4p.train.loop.run`` (see docs/interfaces.md).

The Ray Train worker supplies its own context with the same attributes (``t4p.train.worker``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

import torch

from t4p.config import Config, ConfigError

log = logging.getLogger(__name__)


class RunContextProtocol(Protocol):
    """The seam between the loop and its runner: ranks, DDP wrapping, reporting and where to resume from."""

    rank: int
    world_size: int
    device: torch.device | None  # None: the loop picks from train.device
    resume_dir: str | None  # a checkpoint directory to continue from
    shares_data_cache: bool  # a sweep trial: a stale cache is an error, never re-prepared (check_shared_cache)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module: ...

    def prepare_loader(self, loader: Any) -> Any: ...

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None: ...


class RunContext:
    """One process, no DDP: metrics are logged and appended to ``<out_dir>/metrics.jsonl``.

    ``resume_dir``: a checkpoint directory to continue from. By default a run continues from
    ``<out_dir>/checkpoint`` when a checkpoint is there (``resume=False`` starts afresh).
    """

    rank = 0
    world_size = 1
    device: torch.device | None = None
    shares_data_cache = False  # one run owns its cache: a stale one is re-prepared

    def __init__(self, out_dir: str | Path, resume: bool = True, resume_dir: str | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.resume_dir = resume_dir
        if resume_dir is None and resume and (self.out_dir / "checkpoint" / "checkpoint.pt").is_file():
            self.resume_dir = str(self.out_dir / "checkpoint")
        self.reports: list[dict[str, Any]] = []

    @classmethod
    def for_config(cls, cfg: Config) -> RunContext:
        """The context ``train.resume`` asks for: ``never`` refuses an ``out_dir`` that holds a checkpoint
        (nothing of the earlier run is overwritten); ``auto`` and ``force`` resume it."""
        ctx = cls(cfg.train.out_dir)
        if ctx.resume_dir and cfg.train.resume == "never":
            raise ConfigError(
                f"train.resume=never: {ctx.resume_dir} holds the checkpoint of an earlier run; choose another "
                "train.out_dir, or train.resume=auto to continue it"
            )
        return ctx

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def prepare_loader(self, loader):
        return loader

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        self.reports.append(dict(metrics))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({**metrics, "checkpoint_dir": checkpoint_dir}) + "\n")
