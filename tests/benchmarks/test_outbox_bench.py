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
Each measured run gets a new storescp writing to a new folder in RAM
(/dev/shm; up to 2 GB for two rounds): a PACS writes to its own disk, and a
storescp that has already stored 10,000 files grows slower.
Rounds alternate reference and outbox (``KIOSK_BENCH_ROUNDS``, default 2);
the target applies to the total time of all rounds. Each measured run starts
after ``sync``: the outbox's own ``syncfs`` would otherwise also write out what
the benchmark itself has just written (the 500 MB of input files, the previous
round's spool) and charge it to the outbox.
``KIOSK_BENCH_QUICK=1`` sends 300 instances once (~15 s) and asserts no target.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from tests.support.outbox_data import make_instances
from tests.support.outbox_helpers import outbox_config
from tests.support.peers import free_port, require_binary, start

from kiosk.config import to_toml

pytestmark = pytest.mark.benchmark
QUICK = os.environ.get("KIOSK_BENCH_QUICK") == "1"
COUNT = 300 if QUICK else 10_000
ROUNDS = 1 if QUICK else int(os.environ.get("KIOSK_BENCH_ROUNDS", "2"))
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


def peer_folder(tmp_path: Path) -> Path:
    """Where storescp writes: RAM (/dev/shm) when there is one, as a PACS writes to its own disk, not the kiosk's."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="kiosk-bench-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="received-", dir=tmp_path))


def fresh_storescp(tmp_path: Path, inbox: Path, run: int):
    """A new storescp writing to an empty ``inbox``: no run inherits another's peer state."""
    inbox.mkdir()
    port = free_port()
    return start("storescp", "STORESCP", port, [require_binary("storescp"), "-aet", "STORESCP", "-od", str(inbox), str(port)],
                 tmp_path / f"storescp{run}", env={"TCP_NODELAY": "1"})


def test_outbox_throughput_and_memory(tmp_path):
    from tests.support.netns import need_isolation as _need_isolation

    _need_isolation()
    files = tmp_path / "files"
    files.mkdir()
    copies(files, COUNT)
    peer_root = peer_folder(tmp_path)
    references: list[float] = []
    outboxes: list[float] = []
    growths: list[tuple[float, float]] = []
    try:
        for run in range(ROUNDS):
            # A spool of its own per round, none deleted before the end: creating files right
            # after deleting thousands makes ext4 skip over the recently freed inodes, a cost
            # that a kiosk (whose spool files go days after they were sent) never has.
            round_dir = tmp_path / f"round{run}"
            round_dir.mkdir()
            config_file = round_dir / "kiosk.toml"
            config_file.write_text(to_toml(outbox_config(round_dir)))
            base = [*KIOSK, "--config", str(config_file)]
            inbox = peer_root / f"reference{run}"
            peer = fresh_storescp(tmp_path, inbox, 2 * run)
            try:
                os.sync()
                started = time.perf_counter()
                subprocess.run([*base, "store", str(files), "--to", peer.url], check=True, capture_output=True, timeout=3600)
                references.append(time.perf_counter() - started)
                assert received(inbox) == COUNT
            finally:
                peer.stop()

            journal = round_dir / "spool" / "journal.sqlite"
            samples: list[tuple[int, float]] = []
            inbox = peer_root / f"outbox{run}"
            peer = fresh_storescp(tmp_path, inbox, 2 * run + 1)
            try:
                os.sync()
                started = time.perf_counter()
                proc = subprocess.Popen([*base, "send", str(files), "--to", peer.url, "--wait"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                sampler = threading.Thread(target=_sample, args=(proc, journal, samples), daemon=True)
                sampler.start()
                out, err = proc.communicate(timeout=3600)
                outboxes.append(time.perf_counter() - started)
                sampler.join()
                assert proc.returncode == 0, out + err
                assert received(inbox) == COUNT
            finally:
                peer.stop()
            delivering = [rss for sent, rss in samples if sent > 0]
            if delivering:
                growths.append((delivering[0], max(delivering)))
    finally:
        shutil.rmtree(peer_root, ignore_errors=True)

    ratio = sum(references) / sum(outboxes)
    growth = max((peak - first for first, peak in growths), default=float("nan"))
    print(f"\noutbox benchmark, {COUNT} instances of ~50 KB to storescp (TCP_NODELAY=1, writing to {peer_root.parent}), "
          f"{ROUNDS} rounds:")
    print("  kiosk store (reference): " + ", ".join(f"{t:5.1f} s ({COUNT / t:3.0f}/s)" for t in references))
    print("  kiosk send --wait:       " + ", ".join(f"{t:5.1f} s ({COUNT / t:3.0f}/s)" for t in outboxes))
    print(f"  ratio outbox/reference:  {ratio:.2f} over all rounds, "
          + ", ".join(f"{r / o:.2f}" for r, o in zip(references, outboxes)) + " per round (target >= 0.8)")
    for first, peak in growths:
        print(f"  memory of the delivering process: {first:.0f} MB at the first delivery, "
              f"peak {peak:.0f} MB, growth {peak - first:.1f} MB (target <= 50)")
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
