"""Outbox benchmark (issue 5). Run: ``.venv/bin/pytest -s tests/benchmarks/test_outbox_bench.py``.

10,000 small (50 KB) instances to DCMTK storescp:
- through the outbox (``kiosk send DIR --to X --wait``: spool with fsync,
  journal, delivery in batches) vs ``kiosk store DIR --to X`` (one
  association, no outbox) on the same files in the same run; target:
  instances-per-second ratio >= 0.8;
- memory growth of the delivering process from its first delivered instance
  to the end; target <= 50 MB.
storescp runs with ``TCP_NODELAY=1`` (DCMTK's switch to disable Nagle):
without it every C-STORE waits ~40 ms for a delayed ACK, for both sides alike.
``KIOSK_BENCH_QUICK=1`` sends 300 instances (~15 s) and asserts no target.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from outbox_data import make_instances
from outbox_helpers import outbox_config
from peers import free_port, require_binary, start

from kiosk.config import to_toml

pytestmark = pytest.mark.benchmark
QUICK = os.environ.get("KIOSK_BENCH_QUICK") == "1"
COUNT = 300 if QUICK else 10_000
ROOT = Path(__file__).resolve().parents[2]
KIOSK = [sys.executable, "-m", "kiosk"]


def copies(folder: Path, count: int) -> None:
    """``count`` ~50 KB files that differ only in their SOP Instance UID (same length, patched in place).

    The numbers start with 1 (``10...0 + index``): a zero-padded component would
    be an invalid UID, and every layer reading it would log a warning per file.
    """
    template = make_instances(folder / "template", 1, size=50_000).popitem()
    uid, data = template[0], template[1].read_bytes()
    stem = "1.2.826.0.1.3680043.10.543.7."
    width = len(uid) - len(stem)
    assert width >= 6 and data.count(uid.encode()) == 2
    for index in range(count):
        new = f"{stem}{10 ** (width - 1) + index}".encode()
        (folder / f"im{index:05d}.dcm").write_bytes(data.replace(uid.encode(), new))
    (folder / "template" / next(iter(os.listdir(folder / "template")))).unlink()
    (folder / "template").rmdir()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def received(folder: Path) -> int:
    return sum(1 for _ in folder.iterdir())


def clear(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink()


def test_outbox_throughput_and_memory(tmp_path):
    from conftest import _need_isolation

    _need_isolation()
    files = tmp_path / "files"
    files.mkdir()
    copies(files, COUNT)
    port = free_port()
    inbox = tmp_path / "received"
    inbox.mkdir()
    peer = start("storescp", "STORESCP", port, [require_binary("storescp"), "-aet", "STORESCP", "-od", str(inbox), str(port)],
                 tmp_path / "storescp", env={"TCP_NODELAY": "1"})
    url = f"STORESCP@127.0.0.1:{port}"
    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(to_toml(outbox_config(tmp_path)))
    base = [*KIOSK, "--config", str(config_file)]
    try:
        started = time.perf_counter()
        subprocess.run([*base, "store", str(files), "--to", url], check=True, capture_output=True, timeout=3600)
        reference = time.perf_counter() - started
        assert received(inbox) == COUNT
        clear(inbox)

        journal = tmp_path / "spool" / "journal.sqlite"
        samples: list[tuple[int, float]] = []
        started = time.perf_counter()
        proc = subprocess.Popen([*base, "send", str(files), "--to", url, "--wait"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler = threading.Thread(target=_sample, args=(proc, journal, samples), daemon=True)
        sampler.start()
        out, err = proc.communicate(timeout=3600)
        outbox = time.perf_counter() - started
        sampler.join()
        assert proc.returncode == 0, out + err
        assert received(inbox) == COUNT
    finally:
        peer.stop()

    ratio = reference / outbox
    delivering = [rss for sent, rss in samples if sent > 0]
    growth = max(delivering) - delivering[0] if delivering else float("nan")
    print(f"\noutbox benchmark, {COUNT} instances of ~50 KB to storescp (TCP_NODELAY=1):")
    print(f"  kiosk store (reference): {reference:7.1f} s  {COUNT / reference:6.0f} instances/s")
    print(f"  kiosk send --wait:       {outbox:7.1f} s  {COUNT / outbox:6.0f} instances/s")
    print(f"  ratio outbox/reference:  {ratio:.2f} (target >= 0.8)")
    if delivering:
        print(f"  memory of the delivering process: {delivering[0]:.0f} MB at the first delivery, "
              f"peak {max(delivering):.0f} MB, growth {growth:.1f} MB (target <= 50)")
    if not QUICK:
        assert ratio >= 0.8
        assert growth <= 50


def _sample(proc: subprocess.Popen, journal: Path, samples: list[tuple[int, float]]) -> None:
    """Every 0.25 s: (instances sent so far, RSS of the process)."""
    while proc.poll() is None:
        rss = rss_mb(proc.pid)
        sent = 0
        if journal.exists():
            try:
                with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1) as db:
                    sent = db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'sent'").fetchone()[0]
            except sqlite3.Error:
                sent = samples[-1][0] if samples else 0
        if rss is not None:
            samples.append((sent, rss))
        time.sleep(0.25)
