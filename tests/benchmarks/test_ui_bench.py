"""Touch UI benchmarks under Xvfb: live preview rate, UI-thread frame times under load, cold start.

Each figure is printed next to a reference measured in the same run, so the
ratios compare across machines. ``KIOSK_BENCH_QUICK=1`` shortens them.
Run: ``.venv/bin/pytest -s tests/benchmarks/test_ui_bench.py``.
"""

from __future__ import annotations

import gc
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from kiosk.study import StudyContext

QUICK = os.environ.get("KIOSK_BENCH_QUICK") == "1"
ROOT = Path(__file__).parent.parent.parent


def pump_timed(ui, seconds: float, until=None) -> list[float]:
    """Run the UI loop like the real app (60 fps cap); return each frame's UI-thread time (s)."""
    from kivy.base import EventLoop

    durations = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        EventLoop.idle()
        took = time.perf_counter() - started
        durations.append(took)
        if until is not None and until():
            break
        time.sleep(max(0.0, 1 / 60 - took))
    return durations


def test_live_preview_1080p30(kiosk_ui, mjpeg_stream, tmp_path):
    from drivers.device import DeviceInfo
    from kiosk.config import parse_config

    ui = kiosk_ui(parse_config({"ui": {"sessions_dir": str(tmp_path / "s")}}))
    ui.app.start_session(StudyContext(patient_name="BENCH^PREVIEW", patient_id="B1"))
    acquire = ui.screen("acquire")
    acquire.select(DeviceInfo(uri=f"video:{mjpeg_stream.url}", name="1080p30 stream", kind="camera"))
    ui.wait(lambda: acquire.frames_shown > 3, timeout=30, what="the first frames")
    seconds = 3.0 if QUICK else 10.0
    shown0, seq0 = acquire.frames_shown, acquire._frame_seq
    pump_timed(ui, seconds)
    shown, delivered = acquire.frames_shown - shown0, acquire._frame_seq - seq0
    fps, source_fps = shown / seconds, delivered / seconds
    print(f"\nlive preview 1080p30: {fps:.1f} fps displayed, source delivered {source_fps:.1f} fps "
          f"(ratio {fps / source_fps:.2f}; target >= 25 fps)")
    if not QUICK:
        assert fps >= 25


class GcPauses:
    """The longest garbage-collector pause (s) and its generation while it is installed."""

    def __init__(self) -> None:
        self.longest, self.generation, self._started = 0.0, -1, 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif time.perf_counter() - self._started > self.longest:
            self.longest, self.generation = time.perf_counter() - self._started, info["generation"]

    def __enter__(self) -> "GcPauses":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_exc) -> None:
        gc.callbacks.remove(self)


def test_ui_frames_while_scanning_encoding_sending(kiosk_ui, tmp_path):
    from drivers.device import DeviceInfo
    from kiosk.cli.demo import start

    peers, config = start(tmp_path / "demo")
    try:
        ui = kiosk_ui(config, demo=peers)
        idle = pump_timed(ui, 2.0 if QUICK else 5.0)
        ui.app.start_session(StudyContext(patient_name="BENCH^LOAD", patient_id="B2", accession="B2"))
        acquire = ui.screen("acquire")
        pages = 3 if QUICK else 10
        ui.wait(lambda: acquire.devices, what="devices")
        acquire.select(DeviceInfo(uri=f"demo:scanner?pages={pages}", name="demo feeder", kind="scanner"))
        acquire.preset = "Document (feeder)"
        started = time.perf_counter()
        with GcPauses() as pauses:
            acquire.scan()
            busy = pump_timed(ui, 300, until=lambda: not acquire.busy)
            ui.app.go("review")
            busy += pump_timed(ui, 2)
            send = ui.screen("send")
            ui.app.go("send")
            ui.pump(2)
            send.send()
            busy += pump_timed(ui, 300, until=lambda: send.finished)
        elapsed = time.perf_counter() - started
        assert send.finished and f"{pages} of {pages}" in send.result, send.result
        p99, worst = np.percentile(busy, 99) * 1000, max(busy) * 1000
        idle_p99 = np.percentile(idle, 99) * 1000
        print(f"\nUI thread while {pages} ADF pages are scanned, encoded and sent ({elapsed:.1f} s): "
              f"p99 {p99:.1f} ms, max {worst:.1f} ms over {len(busy)} frames; idle p99 {idle_p99:.1f} ms "
              f"(ratio p99 busy/idle {p99 / max(idle_p99, 0.1):.1f}; targets p99 <= 50 ms, max <= 150 ms); "
              f"longest garbage collection {pauses.longest * 1000:.1f} ms (generation {pauses.generation})")
        if not QUICK:
            assert p99 <= 50 and worst <= 150
    finally:
        peers.stop()


def _first_frame(argv: list[str], env: dict) -> float:
    """Start a process and return the age it reports at its first frame; it is then stopped by PID."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "first frame drawn" in line:
                return float(line.split("first frame drawn")[1].split()[0])
            if time.monotonic() > deadline:
                break
        pytest.fail(f"{argv[:3]} drew no frame:\n{''.join(seen[-20:])}")
    finally:
        proc.kill()
        proc.wait()


REFERENCE_APP = """
import os
os.environ.setdefault("KIVY_NO_ARGS", "1")
from kivy.app import App
from kivy.clock import Clock
from kivy.uix.label import Label
from kiosk.ui.app import process_age

class Hello(App):
    def build(self):
        Clock.schedule_once(lambda dt: print(f"first frame drawn {process_age():.2f} s", flush=True), 0)
        return Label(text="hello")

Hello().run()
"""


def test_cold_start_of_kiosk_demo(xvfb, tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "KIVY_HOME": str(tmp_path / "kivy"), "KIVY_NO_ARGS": "1"}
    (tmp_path / "kivy").mkdir()
    runs = 1 if QUICK else 3
    python = str(ROOT / ".venv" / "bin" / "python")
    kiosk = [python, "-m", "kiosk", "-v", "demo", "--dir", str(tmp_path / "demo")]
    ours = min(_first_frame(kiosk, env) for _ in range(runs))
    script = tmp_path / "hello_app.py"  # Kivy's App needs a source file to look for its .kv
    script.write_text(REFERENCE_APP)
    reference = min(_first_frame([python, str(script)], env) for _ in range(runs))
    print(f"\ncold start of 'kiosk demo' to its first frame: {ours:.2f} s; a bare Kivy label app: "
          f"{reference:.2f} s (ratio {ours / reference:.2f}; target <= 2 s)")
    if not QUICK:
        assert ours <= 2.0
