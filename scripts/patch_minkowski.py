"""Patch the MinkowskiEngine 0.5.4 source tree for Python >= 3.10 and PyTorch 2.x.

Usage: python scripts/patch_minkowski.py SOURCE_TREE

Each patch is a (file, old text, new text) edit that must apply exactly once; a patch whose
old text is missing fails loudly (the tree is not the 0.5.4 release we know). The patch set's
hash (this file's bytes) is part of the wheel cache key in build_minkowski.sh.
"""

from __future__ import annotations

import sys
from pathlib import Path

# 1. collections.Sequence moved to collections.abc (removed from collections in Python 3.10).
SEQUENCE_FILES = (
    "MinkowskiEngine/MinkowskiCommon.py",
    "MinkowskiEngine/MinkowskiCoordinateManager.py",
    "MinkowskiEngine/MinkowskiTensorField.py",
    "MinkowskiEngine/utils/quantization.py",
)
EDITS: list[tuple[str, str, str]] = [
    (path, "from collections import Sequence\n", "from collections.abc import Sequence\n") for path in SEQUENCE_FILES
] + [
    (
        "MinkowskiEngine/MinkowskiKernelGenerator.py",
        "from collections import Sequence, namedtuple\n",
        "from collections import namedtuple\nfrom collections.abc import Sequence\n",
    ),
    # 3. setup.py wipes ./build and uninstalls any installed MinkowskiEngine at import time, on
    #    every invocation (pip's hooks included): drop both side effects.
    ("setup.py", 'run_command("rm", "-rf", "build")\n', ""),
    ("setup.py", 'run_command("pip", "uninstall", "MinkowskiEngine", "-y")\n', ""),
]

# 2. utils/gradcheck.py imports torch._six (gone since torch 2.0): replace the module with a
#    thin wrapper over torch.autograd.gradcheck that keeps ME's call signature.
GRADCHECK = '''"""Gradient check for MinkowskiEngine functions (t4p patch: torch._six no longer exists)."""
import torch


def gradcheck(func, inputs, *args, **kwargs):
    """Check a MinkowskiEngine autograd Function ``func`` (its ``apply``) on ``inputs``."""
    apply = getattr(func, "apply", func)
    return torch.autograd.gradcheck(apply, inputs, *args, **kwargs)
'''


def apply_edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    count = text.count(old)
    if count != 1:
        raise SystemExit(f"patch_minkowski: {path}: expected exactly one {old.strip()!r}, found {count}")
    path.write_text(text.replace(old, new))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    if not (root / "setup.py").is_file():
        raise SystemExit(f"patch_minkowski: {root} is not a MinkowskiEngine source tree (no setup.py)")
    for rel, old, new in EDITS:
        apply_edit(root, rel, old, new)
    (root / "MinkowskiEngine/utils/gradcheck.py").write_text(GRADCHECK)
    (root / "MinkowskiEngineBackend").mkdir(exist_ok=True)  # 4. for build_ext --inplace
    print(f"patch_minkowski: applied {len(EDITS) + 1} patches to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
