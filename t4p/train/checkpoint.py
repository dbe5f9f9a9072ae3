"""Checkpoints: model, optimiser, scheduler, grad scaler, RNG states, step and config in one file.

Written atomically (a temporary file, then ``os.replace``) and read with
``torch.load(weights_only=True)``: everything inside is a tensor, a number, a string or a
container of those (RNG states are stored as tensors, the config as a JSON string). A file that is
missing, truncated, refused, not t4p's, or of another architecture is a ``CheckpointError`` (a
``UserError``: one line and exit code 2 on the command line) naming the file and what was expected.
"""

from __future__ import annotations

import logging
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from t4p.errors import UserError, brief_reason, first_tensor_mismatch
from t4p.io import atomic_path
from t4p.models.text4point import trainable_state_dict

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(UserError, ValueError):
    """A checkpoint is unreadable, truncated, not written by t4p, or does not fit the model; names the file."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """The checkpoint file (or a folder's ``checkpoint.pt``) does not exist."""


def rng_state() -> dict:
    """Python, numpy and torch RNG states as tensors (loadable with weights_only=True)."""
    version, words, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": torch.tensor(words, dtype=torch.int64),
        "python_version": version,
        "python_gauss": torch.tensor([float("nan") if gauss is None else gauss], dtype=torch.float64),
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "numpy_kind": str(np_kind),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of ``rng_state``."""
    gauss = float(state["python_gauss"][0])
    words = tuple(int(w) for w in state["python"].tolist())
    random.setstate((state["python_version"], words, None if np.isnan(gauss) else gauss))
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (state["numpy_kind"], keys, state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` to ``path`` atomically (``t4p.io.atomic_path``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself, or ``<path>/checkpoint.pt`` for a folder; a ``CheckpointNotFound`` when it is not there."""
    path = Path(path)
    if path.is_dir():
        inner = path / CHECKPOINT_NAME
        if inner.is_file():
            return inner
        nested = path / "checkpoint" / CHECKPOINT_NAME  # a run's out_dir instead of its checkpoint folder
        hint = f"; did you mean {nested}?" if nested.is_file() else ""
        raise CheckpointNotFound(
            f"checkpoint folder {path} has no {CHECKPOINT_NAME} (expected a checkpoint file written by t4p, "
            f"or the folder holding it){hint}"
        )
    if not path.is_file():
        raise CheckpointNotFound(f"checkpoint {path} does not exist (expected a file written by t4p)")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    require: tuple[str, ...] = ()) -> dict:
    """Read a checkpoint file (or ``<dir>/checkpoint.pt``) with ``weights_only=True``.

    ``require``: entries it must have (e.g. ``("model", "config")``). Every problem with the file is a
    ``CheckpointError`` naming it and what was expected.
    """
    path = checkpoint_file(path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its directory is at the end
        raise CheckpointError(
            f"checkpoint {path} is not a PyTorch checkpoint ({path.stat().st_size} bytes, not the zip archive "
            "torch.save writes): truncated (an interrupted copy or write) or another kind of file"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refuses anything but tensors, numbers, strings, containers
        raise CheckpointError(
            f"checkpoint {path} contains non-tensor objects and was refused (read with weights_only=True; "
            f"t4p checkpoints hold only tensors, numbers, strings and containers of those): {brief_reason(e)}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:  # a damaged archive: what torch raises for one
        raise CheckpointError(
            f"checkpoint {path} is damaged and cannot be read (expected a file written by t4p): {brief_reason(e)}"
        ) from None
    _check_entries(ckpt, path, require)
    return ckpt


def _check_entries(ckpt: object, path: Path, require: tuple[str, ...]) -> None:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict of entries, found a {type(ckpt).__name__}")
    missing = [k for k in require if k not in ckpt]
    if missing:
        shown = ", ".join(repr(k) for k in sorted(map(str, ckpt))[:6]) + (" ..." if len(ckpt) > 6 else "")
        raise CheckpointError(
            f"checkpoint {path}: not a t4p checkpoint: no {missing[0]!r} entry (expected {', '.join(require)}; "
            f"it has {shown or 'nothing'})"
        )


def restore_model(model: nn.Module, path: str | Path, state: dict[str, torch.Tensor], frozen_ids: set[int]) -> None:
    """Load a checkpoint's ``model`` entry (read from ``path``) into ``model``, after ``check_state_fits``; the
    frozen CLIP tensors (storage pointers ``frozen_ids``) are not in checkpoints: they come from the CLIP weights."""
    own = model.state_dict()
    frozen = frozenset(own) - frozenset(trainable_state_dict(model, frozen_ids))
    check_state_fits(checkpoint_file(path), own, state, frozen)
    model.load_state_dict(state, strict=False)


def check_state_fits(path: str | Path, own: dict[str, torch.Tensor], saved: dict[str, torch.Tensor],
                     optional: frozenset[str] = frozenset()) -> None:
    """A ``CheckpointError`` naming ``path`` and the first tensor of ``saved`` (a checkpoint's ``model``) that
    does not fit ``own`` (the model's ``state_dict()``): missing, of another shape, or not in the model.

    ``optional``: tensors of the model that a checkpoint does not hold (the frozen CLIP tower's).
    """
    if not isinstance(saved, dict) or not all(isinstance(v, torch.Tensor) for v in saved.values()):
        raise CheckpointError(f"checkpoint {path}: its 'model' entry is not a state dict (name -> tensor)")
    mismatch = first_tensor_mismatch(own, saved, optional)
    if mismatch:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model built from the config (another architecture?): {mismatch}"
        )
