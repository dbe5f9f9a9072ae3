"""Helpers of the security, fault and multi-node tests: listening sockets and process trees from /proc.

No psutil in the venv (Ray 2.60 does not depend on it): ``/proc/net/tcp{,6}`` lists the sockets
in state LISTEN (0A) with their inode, and ``/proc/<pid>/fd`` links ``socket:[inode]`` name them.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

LISTEN = "0A"


def _hex_address(text: str) -> tuple[str, int]:
    """``0100007F:1F90`` -> ("127.0.0.1", 8080); IPv6 addresses are four little-endian 32-bit words."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words)), int(port, 16)


def listening_inodes() -> dict[int, tuple[str, int]]:
    """inode -> (address, port) of every TCP socket in state LISTEN on this machine."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        lines = Path(table).read_text().splitlines()[1:] if Path(table).exists() else []
        for line in lines:
            fields = line.split()
            if fields[3] == LISTEN:
                out[int(fields[9])] = _hex_address(fields[1])
    return out


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        pass
    return inodes


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "(comm)": state, ppid


def descendants(root: int) -> set[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            children.setdefault(_parent(int(entry)), []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return "?"


def command_name(pid: int) -> str:
    return cmdline(pid)[:160]


def listening_sockets(pids: set[int]) -> list[tuple[str, int, int, str]]:
    """(address, port, pid, command) of every TCP socket in LISTEN held by one of ``pids``."""
    table = listening_inodes()
    found = []
    for pid in sorted(pids):
        for inode in socket_inodes(pid) & set(table):
            host, port = table[inode]
            found.append((host, port, pid, command_name(pid)))
    return found


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def kill_tree(pid: int) -> None:
    """SIGKILL the process group of ``pid`` (started with ``start_new_session``) and all its descendants."""
    pids = descendants(pid)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for p in pids:  # processes that moved to their own session (Ray's gcs_server, raylet)
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def start_group(cmd: list[str], log: Path, **kwargs) -> subprocess.Popen:
    """Start ``cmd`` in a new session (its own process group), stdout+stderr to ``log``."""
    with log.open("ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)


def script_env() -> dict:
    """Environment for a sweep script run as a subprocess: no inherited Ray address or tracking URI."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def mlflow_runs(uri: str, experiment: str) -> list:
    """Every run of ``experiment`` in the tracking store at ``uri``."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (a unique temp dir of the caller), not this one."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and text in cmdline(int(entry)):
            found.append(int(entry))
    return found
