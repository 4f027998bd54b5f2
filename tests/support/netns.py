"""A private network namespace for the test session, so peers that bind to all interfaces reach only ``lo``."""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import pytest

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PROBLEM: str | None = None


def _only_loopback() -> bool:
    return sorted(os.listdir("/sys/class/net")) == ["lo"]


def _isolate_network() -> str | None:
    """Move this process (and the peers it starts) into a network namespace of its own.

    DCMTK and Orthanc 1.10 cannot bind to loopback only; inside a private
    namespace "all interfaces" is just ``lo``. Returns a problem or None.
    """
    if not _only_loopback():
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            uid, gid = os.getuid(), os.getgid()
            if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
                return f"cannot create a private network namespace: {os.strerror(ctypes.get_errno())}"
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
            Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    result = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if result.returncode != 0:
        return f"cannot bring up loopback in the test namespace: {result.stderr.strip()}"
    return None


def isolate() -> None:
    """Enter the private namespace once, at session start (``pytest_configure``); remember any problem."""
    global PROBLEM
    PROBLEM = _isolate_network()


def need_isolation() -> None:
    """Skip (fail under CI) a test that starts peers when the session has no private namespace."""
    if PROBLEM:
        message = f"peers need a private network namespace: {PROBLEM} (run the suite as root, or under 'unshare -rn')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
