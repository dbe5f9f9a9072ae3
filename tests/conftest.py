"""Shared test fixtures: the shared data folder and the MinkowskiEngine requirement."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


def shared_data_dir() -> Path:
    """`../shared/data` beside the repository (or $T4P_SHARED_DATA)."""
    env = os.environ.get("T4P_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"shared data folder not found at {path}; set T4P_SHARED_DATA")
    return path


MINKOWSKI_AVAILABLE = importlib.util.find_spec("MinkowskiEngine") is not None
REQUIRE_MINKOWSKI = os.environ.get("T4P_REQUIRE_MINKOWSKI") == "1"


def pytest_runtest_setup(item):
    """`minkowski` tests skip without ME, unless T4P_REQUIRE_MINKOWSKI=1 (CI), where they fail."""
    if "minkowski" not in item.keywords or MINKOWSKI_AVAILABLE:
        return
    if REQUIRE_MINKOWSKI:
        pytest.fail("T4P_REQUIRE_MINKOWSKI=1 but MinkowskiEngine is not importable (see scripts/build_minkowski.sh)")
    pytest.skip("MinkowskiEngine is not installed (run `make setup`)")
