"""Stage reuse: pre-training checkpoints stored by a hash of the pre-training config and seed.

Layout of ``sweep.stage_store``::

    <store>/<key>/            a finished stage (written atomically: copied to a temporary
                              sibling, then renamed), holding the final checkpoint files and
                              stage.json (key, seed, config, MLflow run, time)
    <store>/<key>.lock        a stage being trained: JSON with the owner's host, pid and time

A lock whose owner process is gone (same host, pid not alive) is taken over; a lock of another
host is trusted until ``stale_after_s`` has passed since its last refresh.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from t4p.config import Config, _copy, config_hash
from t4p.io import atomic_dir, write_json

log = logging.getLogger(__name__)

# Settings that define what a pre-training learns. Excluded below: where it runs and writes.
PRETRAIN_PREFIXES = ("data.", "model.", "loss.", "optim.", "train.")
_VOLATILE = {
    "train.out_dir": "runs",
    "train.num_threads": 0,
    "train.fail_at_step": -1,
    "train.kill_at_step": -1,
    "train.log_every": 50,
    "train.seed": 0,  # the seed is part of the key, written out
    "data.prepared_dir": "",
    "data.loader_workers": 0,
    "model.clip.cache_dir": "",
    "model.clip.feature_cache": True,
}


def stage_key(pretrain_cfg: Config, seed: int) -> str:
    """``<config_hash of the pre-training settings>-s<seed>``."""
    cfg = _copy(pretrain_cfg)
    if cfg.data.dataset == "synthetic":
        cfg.data.root = ""  # only a cache location: the scenes are keyed by the synth_* settings
    for key, value in _VOLATILE.items():
        section, *rest = key.split(".")
        obj = getattr(cfg, section)
        for part in rest[:-1]:
            obj = getattr(obj, part)
        setattr(obj, rest[-1], value)
    return f"{config_hash(cfg, PRETRAIN_PREFIXES)}-s{seed}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM
    return True


@dataclass
class StageLock:
    path: Path
    owner: dict

    def release(self) -> None:
        try:
            if json.loads(self.path.read_text()).get("token") == self.owner["token"]:
                self.path.unlink()
        except (OSError, ValueError):
            pass


class StageStore:
    def __init__(self, root: str | os.PathLike, stale_after_s: float = 6 * 3600):
        self.root = Path(root).resolve()  # created on the first claim (a --dry-run writes nothing)
        self.stale_after_s = stale_after_s

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / "stage.json").is_file()

    def info(self, key: str) -> dict:
        return json.loads((self.path(key) / "stage.json").read_text())

    # ----------------------------------------------------------------------- locking

    def _lock_path(self, key: str) -> Path:
        return self.root / f"{key}.lock"

    def lock_owner(self, key: str) -> dict | None:
        try:
            return json.loads(self._lock_path(key).read_text())
        except (OSError, ValueError):
            return None

    def _owner_gone(self, owner: dict | None) -> bool:
        if owner is None:
            return True  # unreadable or half-written lock: treat as abandoned
        if owner.get("host") == socket.gethostname():
            return not _pid_alive(int(owner.get("pid", -1)))
        return time.time() - float(owner.get("time", 0)) > self.stale_after_s

    def try_claim(self, key: str) -> StageLock | None:
        """Claim ``key`` for training; None if a live owner holds it. Takes over dead owners' locks."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._lock_path(key)
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "token": uuid.uuid4().hex}
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                current = self.lock_owner(key)
                if not self._owner_gone(current):
                    return None
                log.warning("stage %s: lock owner %s is gone; taking the lock over", key, current)
                stale = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}")
                try:
                    os.replace(path, stale)  # atomic: only one taker wins the rename
                    stale.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(owner, f)
            return StageLock(path, owner)
        return None

    def claim(self, key: str, poll_s: float = 2.0, timeout_s: float = 7 * 24 * 3600) -> StageLock | None:
        """Block until ``key`` is claimed (returns the lock) or stored by someone else (returns None)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.has(key):
                return None
            lock = self.try_claim(key)
            if lock is not None:
                if self.has(key):  # finished between our check and the claim
                    lock.release()
                    return None
                return lock
            time.sleep(poll_s)
        raise TimeoutError(f"stage {key}: lock {self._lock_path(key)} held by {self.lock_owner(key)}")

    # ----------------------------------------------------------------------- writing

    def commit(self, key: str, checkpoint_dir: str | os.PathLike, info: dict) -> Path:
        """Copy ``checkpoint_dir`` into the store as stage ``key``, atomically."""
        final = self.path(key)
        with atomic_dir(final, lambda _: self.has(key)) as tmp:  # another writer's complete stage is kept
            shutil.copytree(checkpoint_dir, tmp, dirs_exist_ok=True)
            write_json(tmp / "stage.json", {"key": key, "time": time.time(), **info}, indent=2)
        return final
