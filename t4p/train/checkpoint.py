"""Checkpoints: model, optimiser, scheduler, grad scaler, RNG states, step and config in one file.

Written atomically (a temporary file, then ``os.replace``) and read with
``torch.load(weights_only=True)``: everything inside is a tensor, a number, a string or a
container of those (RNG states are stored as tensors, the config as a JSON string).
"""

from __future__ import annotations

import logging
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from t4p.io import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint file (or ``<dir>/checkpoint.pt``) with ``weights_only=True``."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (expected a file written by t4p)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refuses anything but tensors, numbers, strings, containers
        raise ValueError(
            f"checkpoint {path} contains non-tensor objects and was refused (read with weights_only=True; "
            f"t4p checkpoints hold only tensors, numbers, strings and containers of those): {_unpickler_reason(e)}"
        ) from None


def _unpickler_reason(e: Exception) -> str:
    """The line of torch's weights_only error that names the refused global (or the first line)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    found = [ln for ln in lines if "WeightsUnpickler error" in ln]
    return (found or lines or [type(e).__name__])[0][:300]
