"""Media import benchmark (issue 16). Run: ``flock /tmp/kiosk-bench.lock .venv/bin/pytest -s
tests/benchmarks/test_import_bench.py``.

1,000 uncompressed 16-bit 512 x 512 instances (~0.5 MB each, ~500 MB) on a "CD" (a folder in RAM
with a DICOMDIR made by DCMTK ``dcmmkdir``), imported to DCMTK ``storescp`` (writing to RAM):

- the kiosk: the medium read, every instance reconciled to a local patient (full read, coercion,
  Original Attributes) and queued in the outbox (spool on disk, one sync per chunk) while this
  process's delivery sends the first chunks, until every job is delivered (what ``kiosk import
  --wait`` does);
- the reference: ``storescu +sd +r`` of the same files to the same storescp, no coercion.

storescp runs with ``TCP_NODELAY=1``: with DCMTK's default sockets storescu waits ~40 ms for a
delayed ACK per instance and the reference would be three times slower than it can be.

Rounds alternate (``KIOSK_BENCH_ROUNDS``, default 2), each after ``sync``; the target applies to
the total times: throughput ratio storescu time / kiosk time >= 0.8. ``KIOSK_BENCH_QUICK=1``
imports 100 instances once and asserts nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from tests.support.foreign_media import make_medium
from tests.support.outbox_helpers import outbox_config
from tests.support.peers import require_binary, start_storescp

pytestmark = pytest.mark.benchmark
QUICK = os.environ.get("KIOSK_BENCH_QUICK") == "1"
SERIES, PER_SERIES = (2, 50) if QUICK else (10, 100)
COUNT = SERIES * PER_SERIES
ROUNDS = 1 if QUICK else int(os.environ.get("KIOSK_BENCH_ROUNDS", "2"))
TARGET = 0.8


def _kiosk_import(root: Path, spool: Path, peer_url: str) -> float:
    from kiosk.media.importer import import_media
    from kiosk.media.reader import read_medium
    from kiosk.outbox import Outbox
    from kiosk.outbox.destinations import parse_destination
    from kiosk.outbox.worker import wait_for
    from kiosk.station import BackgroundDelivery, Station
    from kiosk.study import StudyContext

    config = outbox_config(spool)
    name, spec = parse_destination(config, peer_url)
    context = StudyContext.manual(patient_name="Bench^Import", patient_id="BENCH-1", issuer="KIOSKHOSP")
    outbox = Outbox.from_config(config)
    delivery = BackgroundDelivery.claim(outbox, config, poll=0.5)
    try:
        started = time.perf_counter()
        delivery.start()
        medium = read_medium(root)
        result = import_media(config, medium, medium.chosen(), context, {name: spec}, scheduled=False,
                              station=Station(), outbox=outbox)
        assert result.queued == COUNT and not result.failed
        done = wait_for(outbox, result.jobs[name])
        while not done():
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        assert {j.state for j in outbox.journal.jobs_by_id(result.jobs[name])} == {"sent"}
        return elapsed
    finally:
        delivery.stop()
        outbox.close()


def test_import_throughput_vs_storescu(shm, tmp_path):
    storescu = require_binary("storescu")
    root = shm / "cd"
    make_medium(root, studies=1, series=SERIES, per_series=PER_SERIES, side=512, bits=16)
    megabytes = sum(p.stat().st_size for p in (root / "DICOM").rglob("*") if p.is_file()) / 1e6
    times: dict[str, list[float]] = {"kiosk import": [], "storescu +sd +r": []}
    for round_ in range(ROUNDS):
        for name in times:
            peer = start_storescp(shm / f"peer-{round_}-{len(times[name])}-{name[0]}", nodelay=True)
            try:
                subprocess.run(["sync"], check=True)
                if name == "kiosk import":
                    elapsed = _kiosk_import(root, tmp_path / f"round{round_}", peer.url)
                else:
                    started = time.perf_counter()
                    subprocess.run([storescu, "+sd", "+r", "-aec", peer.aet, "127.0.0.1", str(peer.port),
                                    str(root / "DICOM")], check=True, capture_output=True)
                    elapsed = time.perf_counter() - started
                assert len(list(peer.extra["received"].iterdir())) == COUNT, f"{name} did not deliver everything"
                times[name].append(elapsed)
            finally:
                peer.stop()
                shutil.rmtree(peer.extra["received"], ignore_errors=True)
    kiosk, reference = sum(times["kiosk import"]), sum(times["storescu +sd +r"])
    ratio = reference / kiosk
    print(f"\nimport of {COUNT} instances ({megabytes:.0f} MB) from a DICOMDIR to storescp, {ROUNDS} round(s):")
    for name, values in times.items():
        print(f"  {name:<16} " + ", ".join(f"{t:5.2f} s ({megabytes / t:4.0f} MB/s)" for t in values))
    print(f"  throughput ratio (storescu / kiosk): {ratio:.2f} (target >= {TARGET})")
    if not QUICK:
        assert ratio >= TARGET
