"""The user-mistake base class: what a command turns into one line on stderr and exit code 2.

Every error caused by the user's input (a config value, a data file, a checkpoint, CLIP weights,
a command-line argument) derives from ``UserError`` as well as from the builtin it always was
(``ValueError``, ``FileNotFoundError``), so callers that catch the builtin keep working. Its message
names the file (and line / frame / key) and what was expected. Anything else is a bug and keeps its
traceback.

``run_command`` is the one place that turns a ``UserError`` into ``<prog>: error: <message>`` and exit
code 2 (``t4p`` and the sweep scripts); ``--debug`` or ``T4P_DEBUG=1`` re-raises it with its traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

DEBUG_ENV = "T4P_DEBUG"


class UserError(Exception):
    """Bad input from the user: reported as ``t4p: error: <message>`` with exit code 2."""


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an input error instead of one line (also {DEBUG_ENV}=1)")


def debug_requested(flag: bool = False) -> bool:
    """``--debug`` given, or ``T4P_DEBUG`` set to anything but "" or "0"."""
    return flag or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run_command(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int | None],
                argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (argparse errors exit 2 as usual) and return ``run(args)``'s exit code.

    A ``UserError`` becomes one line ``<parser.prog>: error: <message>`` on stderr and exit code 2, unless
    ``args.debug`` or ``T4P_DEBUG=1`` asks for its traceback. Every other exception propagates: it is a bug.
    """
    args = parser.parse_args(argv)
    try:
        return int(run(args) or 0)
    except UserError as err:
        if debug_requested(getattr(args, "debug", False)):
            raise
        print(f"{parser.prog}: error: {one_line(str(err))}", file=sys.stderr)
        return 2


def command_path(name: str) -> str:
    """``name`` as a printed command that works as shown: the copy beside this interpreter (a virtual
    environment's ``bin/``, so it runs without activating the environment), else the bare name; shell-quoted."""
    path = Path(sys.executable).parent / name
    return shlex.quote(str(path)) if path.is_file() and os.access(path, os.X_OK) else name


def one_line(text: str) -> str:
    """``text`` with its lines joined by spaces (a message printed as one line)."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def first_tensor_mismatch(expected: Mapping[str, Any], found: Mapping[str, Any],
                          optional: frozenset[str] = frozenset()) -> str | None:
    """The first tensor (in ``expected``'s order) that ``found`` lacks or has in another shape, else the first
    tensor ``found`` has beyond ``expected``; as a phrase naming it and both shapes. None when every tensor fits.

    Values are anything with ``.shape`` (tensors, arrays). ``optional``: names ``found`` may lack.
    """
    for name, tensor in expected.items():
        if name not in found:
            if name in optional:
                continue
            return f"tensor {name!r} (expected shape {tuple(tensor.shape)}) is missing"
        if tuple(found[name].shape) != tuple(tensor.shape):
            return f"tensor {name!r}: expected shape {tuple(tensor.shape)}, found {tuple(found[name].shape)}"
    extra = [name for name in found if name not in expected]
    if extra:
        return f"tensor {extra[0]!r} (shape {tuple(found[extra[0]].shape)}) is not in the model"
    return None


def brief_reason(err: BaseException) -> str:
    """What a file reader's error says, briefly: one line, its first sentence, at most 300 characters; for a
    ``torch.load`` refusal the ``WeightsUnpickler error: ...`` detail (not PyTorch's advice around it)."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    first = one_line(text).split(". ")[0]
    return (first or type(err).__name__)[:300]
