"""Acquisition benchmarks (issue 6). Run: ``.venv/bin/pytest -s tests/benchmarks/test_drivers_bench.py``.

Figures are printed as ratios against a reference measured in the same run,
so they compare across machines. ``KIOSK_BENCH_QUICK=1`` runs shortened
versions (a few seconds); neither is part of the default suite, because the
driver tests already check the preview rate and the clip length.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark
QUICK = os.environ.get("KIOSK_BENCH_QUICK") == "1"
ROOT = Path(__file__).resolve().parents[2]


def _cpu_percent(started_cpu: float, started_wall: float) -> float:
    return 100 * (time.process_time() - started_cpu) / (time.monotonic() - started_wall)


def test_live_preview_1080p30(mjpeg_stream):
    """Frames per second to a consumer and grab-to-consumer latency; reference: a bare cv2 read loop."""
    cv2 = pytest.importorskip("cv2")
    from drivers.registry import open_device

    seconds = 3.0 if QUICK else 10.0
    cap = cv2.VideoCapture(mjpeg_stream.url, cv2.CAP_FFMPEG)
    assert cap.isOpened()
    cap.read()
    wall, cpu, frames = time.monotonic(), time.process_time(), 0
    while time.monotonic() - wall < seconds:
        frames += cap.read()[0]
    ref_fps, ref_cpu = frames / (time.monotonic() - wall), _cpu_percent(cpu, wall)
    cap.release()
    mjpeg_stream.kill()
    mjpeg_stream.start()

    device = open_device(f"video:{mjpeg_stream.url}")
    try:
        first = device.latest(timeout=5).seq
        latencies, frames = [], 0
        wall, cpu = time.monotonic(), time.process_time()
        for frame in device.frames():
            latencies.append(time.monotonic() - frame.grabbed_at)
            frames += 1
            if time.monotonic() - wall >= seconds:
                break
        fps, used = frames / (time.monotonic() - wall), _cpu_percent(cpu, wall)
        produced = frame.seq - first + 1  # frames() starts with the frame already there
    finally:
        device.close()
    median_ms = 1000 * statistics.median(latencies)
    p95_ms = 1000 * sorted(latencies)[int(len(latencies) * 0.95)]
    print(f"\n[bench] live preview 1080p30 MJPEG over TCP, {seconds:.0f} s:"
          f"\n  consumer: {fps:.1f} fps (target >= 29), latency median {median_ms:.2f} ms, p95 {p95_ms:.2f} ms "
          f"(target median <= 50 ms), CPU {used:.0f}% of one core; {produced - frames} of {produced} grabbed "
          f"frames skipped by the consumer"
          f"\n  reference (bare cv2 read loop, BGR, no thread): {ref_fps:.1f} fps, CPU {ref_cpu:.0f}%"
          f"\n  ratio fps {fps / ref_fps:.3f}, CPU {used / max(ref_cpu, 1e-6):.2f}x (the driver also converts to RGB)")
    # ffmpeg's own pace dips below 30 fps on a loaded machine (the reference shows it): the driver's
    # part is to hand on every frame it grabs, quickly.
    assert produced - frames <= 0.02 * produced
    assert median_ms <= 50


def _run_acquire(pages: int, out: Path) -> tuple[float, int]:
    """``kiosk acquire`` of ``pages`` ADF pages in a child; returns (seconds, peak RSS MB of that child).

    The peak is the child's own ``VmHWM`` (the high-water mark of the memory map
    that exec gave it), read by the child as it ends. Neither its
    ``RUSAGE_SELF.ru_maxrss`` nor the rusage ``wait4`` returns will do: Linux
    carries the forking process's peak across exec into both, so they showed
    the pytest process's 862 MB once an earlier benchmark had grown it.
    """
    code = ("import sys, time; from kiosk.cli import main; t = time.monotonic(); rc = main(sys.argv[1:]); "
            "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]; "
            "print(time.monotonic() - t, int(hwm) // 1024); sys.exit(rc)")
    result = subprocess.run(
        [sys.executable, "-c", code, "acquire", "--source", f"demo:scanner?pages={pages}", "--adf", "--mode", "color",
         "--dpi", "300", "-o", str(out), "--patient-name", "Bench^Mark", "--patient-id", "B1"],
        capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert result.returncode == 0, result.stderr
    seconds, peak = result.stdout.split()[-2:]
    assert len(list(out.glob("*.dcm"))) == pages
    return float(seconds), int(peak)


def _scan_only(pages: int) -> float:
    from drivers.device import Settings
    from drivers.registry import open_device

    with open_device(f"demo:scanner?pages={pages}") as scanner:
        scanner.configure(Settings(mode="color", depth=8, dpi=300, source="adf"))
        started = time.monotonic()
        for _ in scanner.batch():
            pass
    return time.monotonic() - started


def test_adf_batch_300dpi_colour(tmp_path):
    """Pages/s and peak memory of acquire -> dicomizer -> files; reference: a short batch and the bare scanner."""
    long_pages, short_pages = (10, 3) if QUICK else (50, 10)
    scan_seconds = _scan_only(short_pages)
    short_s, short_peak = _run_acquire(short_pages, tmp_path / "short")
    long_s, long_peak = _run_acquire(long_pages, tmp_path / "long")
    rate = long_pages / long_s
    print(f"\n[bench] ADF batch, A4 colour 300 dpi (demo scanner) -> dicomizer (auto TS) -> files:"
          f"\n  {long_pages} pages: {rate:.2f} pages/s, peak RSS {long_peak} MB (target < 600 MB)"
          f"\n  {short_pages} pages: {short_pages / short_s:.2f} pages/s, peak RSS {short_peak} MB"
          f"\n  scanner alone: {short_pages / scan_seconds:.2f} pages/s"
          f"\n  ratio peak memory {long_pages}/{short_pages} pages: {long_peak / short_peak:.2f} (1.0 = no growth); "
          f"pipeline / scanner alone: {rate / (short_pages / scan_seconds):.3f}")
    assert long_peak < 600
    assert long_peak / short_peak < 1.25
