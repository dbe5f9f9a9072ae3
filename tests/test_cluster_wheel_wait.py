"""The worker's wheel-wait step of cluster/node_setup.sh (cluster/wait_for_wheel.sh), on real files."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WAIT = REPO / "cluster" / "wait_for_wheel.sh"
KEY = "me0.5.4-torch2.14.1-cp311-cu13.0-sm9_0-pabc"


def _wait(cache: Path, tries: int = 50) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(WAIT), str(cache), str(tries), "0.1"], capture_output=True, text=True,
                          timeout=60)


def test_a_lower_case_wheel_written_while_waiting_is_found(tmp_path):
    """setuptools spells the wheel minkowskiengine-...: the old 'MinkowskiEngine-*.whl' glob never saw it."""
    wheel_dir = tmp_path / "wheels" / KEY
    wheel_dir.mkdir(parents=True)
    later = threading.Timer(0.5, lambda: (wheel_dir / "minkowskiengine-0.5.4-cp311-cp311-linux_x86_64.whl")
                            .write_bytes(b"PK"))
    later.start()
    start = time.monotonic()
    out = _wait(tmp_path)
    later.join()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "minkowskiengine-0.5.4" in out.stdout and "waiting" in out.stdout
    assert time.monotonic() - start < 30


def test_a_failed_head_build_stops_the_wait_at_once(tmp_path):
    wheel_dir = tmp_path / "wheels" / KEY
    wheel_dir.mkdir(parents=True)
    (wheel_dir / "FAILED").write_text("build failed on head at 2026-12-08T00:00:00Z; log: /x.log")
    out = _wait(tmp_path, tries=1000)
    assert out.returncode == 1
    assert "build failed on head" in out.stdout and "pure-PyTorch" in out.stdout
    assert "waiting" not in out.stdout


def test_a_cpu_wheel_is_not_the_heads_and_the_wait_gives_up(tmp_path):
    cpu = tmp_path / "wheels" / "me0.5.4-torch2.14.1-cp311-cpu-pabc"
    cpu.mkdir(parents=True)
    (cpu / "minkowskiengine-0.5.4-cp311-cp311-linux_x86_64.whl").write_bytes(b"PK")
    out = _wait(tmp_path, tries=3)
    assert out.returncode == 2 and out.stdout.count("waiting") == 3


def test_node_setup_uses_the_wait_step():
    text = (REPO / "cluster" / "node_setup.sh").read_text()
    assert "cluster/wait_for_wheel.sh" in text and "make setup-core" in text
    build = (REPO / "scripts" / "build_minkowski.sh").read_text()
    assert '"$wheel_dir/DONE"' in build and '"$wheel_dir/FAILED"' in build
