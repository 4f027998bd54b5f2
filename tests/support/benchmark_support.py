"""Benchmarks run in one pytest process (``pytest -s tests/benchmarks``): none may leave work behind.

A thread or a child process a benchmark forgets keeps taking CPU from the
ones after it, and their figures are then worse in a whole run than alone.
Session peers (Xvfb, Orthanc) start before a benchmark that uses them and
are not counted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

SETTLE = 5.0  # seconds for threads and processes a benchmark has stopped to end


def _children() -> dict[int, str]:
    """This process's child processes: pid -> command."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == os.getpid():
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # ended while we looked
    return found


@pytest.fixture(autouse=True)
def benchmark_leaves_nothing_running(request: pytest.FixtureRequest):
    """Fail a benchmark that leaves a thread or a child process running after its own fixtures are torn down."""
    if request.node.get_closest_marker("benchmark") is None:
        yield
        return
    threads, children = set(threading.enumerate()), set(_children())
    yield
    deadline = time.monotonic() + SETTLE
    while True:
        extra_threads = [t.name for t in threading.enumerate() if t not in threads and t.is_alive()]
        extra_children = {pid: cmd for pid, cmd in _children().items() if pid not in children}
        if not extra_threads and not extra_children or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not extra_threads, f"threads left running: {extra_threads}"
    assert not extra_children, f"child processes left running: {extra_children}"


@pytest.fixture
def shm():
    """A private folder in RAM (/dev/shm) where there is one, else on disk: benchmark inputs that the
    disk's speed should not decide."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    folder = Path(tempfile.mkdtemp(prefix="kiosk-bench-", dir=base))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
