"""STOW-RS benchmark (issue 17). Run: ``.venv/bin/pytest -s tests/benchmarks/test_stow_bench.py``.

1,000 instances of ~50 KB, ``kiosk store --to`` a STOW-RS destination (Orthanc's
DICOMweb plugin, HTTP basic authentication on) against ``kiosk store --to`` the
same Orthanc over DIMSE (C-STORE), alternating, 2 rounds each, Orthanc's
storage and index on tmpfs (/dev/shm) and emptied between runs. Both are whole
processes, start-up included. Target: STOW-RS's best time at most 1.25 x
DIMSE's (throughput >= 0.8 x). Memory: the peak RSS of the ``kiosk store``
process (GNU time) sending 1,000 instances (~50 MB, two requests at the
default max_request_mb = 50) against sending 100 (~5 MB, one request): a body
held in memory would add ~45 MB; the target is under 15 MB more.
``KIOSK_BENCH_QUICK=1`` sends 100 and 20 instances in 1 round (nothing asserted).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import ORTHANC_WEB_PASSWORD, ORTHANC_WEB_USER
from tests.support.netns import need_isolation
from tests.support.outbox_data import make_instances
from tests.support.peers import HOST, require_binary, start_orthanc

pytestmark = pytest.mark.benchmark
QUICK = os.environ.get("KIOSK_BENCH_QUICK") == "1"
ROOT = Path(__file__).resolve().parents[2]
KIOSK = [str(ROOT / ".venv" / "bin" / "kiosk")] if (ROOT / ".venv" / "bin" / "kiosk").exists() else [sys.executable, "-m", "kiosk"]
SIZE = 50_000


def run_store(config: Path, source: Path, to: str) -> tuple[float, float]:
    """``kiosk store SOURCE --to TO``: (seconds, peak RSS in MB of that process).

    The peak comes from GNU time: the ru_maxrss ``os.wait4`` gives for a child
    started from this process includes this process's own peak (Linux keeps
    it across exec; subprocess starts children with vfork).
    """
    report = config.parent / "maxrss"
    started = time.perf_counter()
    result = subprocess.run([require_binary("time"), "-o", str(report), "-f", "%M",
                             *KIOSK, "--config", str(config), "store", str(source), "--to", to],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, f"kiosk store --to {to} failed: {result.stderr}"
    return elapsed, int(report.read_text().split()[-1]) / 1024


def test_stow_throughput_and_memory_against_dimse(shm):
    need_isolation()
    count, small, rounds = (100, 20, 1) if QUICK else (1000, 100, 2)
    source, few = shm / "source", shm / "few"
    made = make_instances(source, count, size=SIZE, patient_id="BENCH1")
    for path in sorted(made.values())[:small]:
        few.mkdir(exist_ok=True)
        shutil.copy(path, few / path.name)
    megabytes = sum(p.stat().st_size for p in made.values()) / 1e6
    password = shm / "password"
    password.write_text(ORTHANC_WEB_PASSWORD)
    password.chmod(0o600)
    orthanc = start_orthanc(shm / "orthanc", users={ORTHANC_WEB_USER: ORTHANC_WEB_PASSWORD}, storage=shm / "orthanc")
    config = shm / "kiosk.toml"
    config.write_text(f'[local]\nae_title = "KIOSK"\n'
                      f'[destinations.web]\nstow_url = "{orthanc.dicomweb_url}"\nusername = "{ORTHANC_WEB_USER}"\n'
                      f'password_file = "{password}"\n'
                      f'[destinations.dimse]\nae_title = "{orthanc.aet}"\nhost = "{HOST}"\nport = {orthanc.port}\n')
    times: dict[str, list[float]] = {"stow": [], "dimse": []}
    peaks: dict[str, list[float]] = {"stow": [], "dimse": [], "stow-small": []}
    try:
        for _ in range(rounds):
            for kind, to in (("dimse", "dimse"), ("stow", "web")):
                seconds, peak = run_store(config, source, to)
                assert len(orthanc.instances()) == count, f"{kind}: Orthanc did not get every instance"
                orthanc.clear()
                times[kind].append(seconds)
                peaks[kind].append(peak)
        seconds, peak = run_store(config, few, "web")
        assert len(orthanc.instances()) == small
        orthanc.clear()
        peaks["stow-small"].append(peak)
    finally:
        orthanc.stop()
    best = {kind: min(t) for kind, t in times.items()}
    ratio = best["dimse"] / best["stow"]
    growth = max(peaks["stow"]) - peaks["stow-small"][0]
    print(f"\n{count} x {megabytes / count * 1000:.0f} KB ({megabytes:.0f} MB) to Orthanc (storage on tmpfs), "
          f"whole kiosk store processes, best of {rounds}:")
    for kind in ("dimse", "stow"):
        print(f"  {kind:<6} {best[kind]:.2f} s  {count / best[kind]:.0f} instances/s  "
              f"(all: {', '.join(f'{t:.2f}' for t in times[kind])}; peak RSS {max(peaks[kind]):.0f} MB)")
    print(f"  STOW-RS/DIMSE throughput: {ratio:.2f} (target >= 0.8)")
    print(f"  peak RSS of kiosk store over STOW-RS: {small} instances {peaks['stow-small'][0]:.0f} MB, "
          f"{count} instances {max(peaks['stow']):.0f} MB (+{growth:.1f} MB; target < 15)")
    if not QUICK:
        assert ratio >= 0.8
        assert growth < 15
