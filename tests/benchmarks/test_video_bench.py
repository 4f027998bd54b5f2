"""Video benchmarks (issue 15): recording 1080p30 from an MJPEG card, and importing a long MP4.

Run: ``.venv/bin/pytest -s tests/benchmarks/test_video_bench.py``; ``KIOSK_BENCH_QUICK=1`` records
60 s instead of 10 minutes and imports a 30 s file instead of 5 minutes, asserting no target;
``KIOSK_BENCH_PRESET=ultrafast`` (or another) records with that preset instead of ``[video] preset``.
Each figure is printed next to a reference measured in the same run (ffmpeg's own libx264 on the
same frames; ``cp``). The import is timed in the running kiosk (as the touch UI's Files source and the
inbox import) and, printed beside it, as a new ``kiosk convert`` process.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiosk.study import StudyContext
from tests.benchmarks.test_ui_bench import pump_timed
from tests.support.peers import require_binary

pytestmark = pytest.mark.benchmark
QUICK = os.environ.get("KIOSK_BENCH_QUICK") == "1"
ROOT = Path(__file__).resolve().parents[2]
TICKS = os.sysconf("SC_CLK_TCK")
RUNS = 5


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _child_cpu(argv: list[str]) -> float:
    """CPU seconds (user + system) a child command used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _pump_cpu(ui, seconds: float) -> tuple[float, float]:
    """Run the UI for ``seconds``; (process CPU seconds per second, RSS peak MB) meanwhile."""
    cpu, wall, peak = time.process_time(), time.monotonic(), 0.0
    while time.monotonic() - wall < seconds:
        pump_timed(ui, min(5.0, seconds - (time.monotonic() - wall)))
        peak = max(peak, _rss_mb())
    return (time.process_time() - cpu) / (time.monotonic() - wall), peak


@pytest.mark.timeout(1800)  # ten minutes of recording, then ffmpeg's reference on as many frames
def test_recording_1080p30_from_an_mjpeg_card(kiosk_ui, mjpeg_stream, tmp_path):
    from drivers.device import DeviceInfo
    from kiosk.config import parse_config
    from kiosk.outbox import Outbox
    from kiosk.station import OutboxOutput
    from tests.support.outbox_helpers import outbox_config

    seconds = 60.0 if QUICK else 600.0
    preset = os.environ.get("KIOSK_BENCH_PRESET")  # to try another preset than the default
    config = parse_config({"ui": {"sessions_dir": str(tmp_path / "s")},
                           **({"video": {"preset": preset}} if preset else {})})
    ui = kiosk_ui(config)
    ui.app.start_session(StudyContext(patient_name="BENCH^VIDEO", patient_id="B1", modality="ES"))
    acquire = ui.screen("acquire")
    acquire.select(DeviceInfo(uri=f"video:{mjpeg_stream.url}", name="1080p30 card", kind="camera"))
    ui.wait(lambda: acquire.frames_shown > 3, timeout=30, what="the first frames")
    pump_timed(ui, 2.0)
    # The preview alone first: the recording's own CPU is what it adds to this.
    preview_cpu, _ = _pump_cpu(ui, 10.0 if QUICK else 30.0)
    acquire.toggle_recording()
    ui.wait(lambda: acquire._recording is not None and acquire._recording.started.is_set(),
            what="the recording to start")
    recorder = acquire._recording.recorder
    pump_timed(ui, 3.0)  # the encoder's buffers and the queue fill in the first seconds
    rss0, shown0, started = _rss_mb(), acquire.frames_shown, time.monotonic()
    recording_cpu, rss_peak = _pump_cpu(ui, seconds - 5)
    wall = time.monotonic() - started
    encoder_cpu = (recording_cpu - preview_cpu) * wall
    preview_fps = (acquire.frames_shown - shown0) / wall
    rss_growth = max(rss_peak, _rss_mb()) - rss0
    frames, dropped = recorder.frames, recorder.dropped
    outbox = Outbox.from_config(outbox_config(tmp_path / "o"))  # the kiosk's, open before the Stop
    queued: list[float] = []  # when the outbox has the object (its journal committed)
    ui.app.station.subscribe(lambda _event: queued.append(time.monotonic()), "queued")
    stopped_at = time.monotonic()
    acquire.toggle_recording()
    ui.wait(lambda: acquire.count == 1 and not acquire.recording, timeout=60, what="the clip in the session")
    added_at = time.monotonic()
    # As the UI's Send does: the session's clip linked into the outbox, written out before it is sent.
    ui.app.station.send([OutboxOutput(outbox, {"pacs": {"kind": "folder", "root": str(tmp_path / "nowhere")}},
                                      link_clips=True)])
    sent_at, [queued_at] = time.monotonic(), queued
    [job] = outbox.journal.jobs()
    outbox.prepare(job)  # what the delivery service does first
    prepared = time.monotonic() - sent_at
    # Reference: ffmpeg's libx264, same preset and quality, on as many of the same (source) frames,
    # less what ffmpeg spends decoding the MJPEG (the kiosk's preview decodes those).
    video, count, ffmpeg = config.video, str(int(30 * wall)), require_binary("ffmpeg")
    source = ["-stream_loop", "-1", "-i", str(mjpeg_stream.clip), "-frames:v", count]
    decoding = _child_cpu([ffmpeg, "-v", "error", "-y", *source, "-f", "null", "-"])
    ffmpeg_cpu = _child_cpu([ffmpeg, "-v", "error", "-y", *source, "-c:v", "libx264", "-preset", video.preset,
                             "-crf", str(video.crf), "-profile:v", "high", "-pix_fmt", "yuv420p",
                             str(tmp_path / "reference.mp4")]) - decoding
    print(f"\n[bench] recording 1080p30 MJPEG ({video.preset}, crf {video.crf}) for {wall:.0f} s with the preview:"
          f"\n  frames recorded {frames} ({frames / 30:.1f} s at 30 fps), dropped {dropped} (target 0)"
          f"\n  preview {preview_fps:.1f} fps under Xvfb (target >= 25)"
          f"\n  RSS growth {rss_growth:.1f} MB over the recording (target <= 50)"
          f"\n  Stop -> clip in the session {added_at - stopped_at:.2f} s, -> object queued "
          f"{queued_at - stopped_at:.2f} s (target <= 2), the session's copy deleted {sent_at - stopped_at:.2f} s; "
          f"the object written out for sending (the delivery service's first step) in {prepared:.2f} s more"
          f"\n  recording CPU {encoder_cpu:.1f} s (the process's {recording_cpu:.2f} cores less the preview's "
          f"{preview_cpu:.2f}); ffmpeg -c:v libx264 on the same frames {ffmpeg_cpu:.1f} s (less decoding "
          f"{decoding:.1f} s): ratio {encoder_cpu / ffmpeg_cpu:.2f} (target <= 1.2)")
    if not QUICK:
        assert dropped == 0
        assert preview_fps >= 25
        assert rss_growth <= 50
        assert queued_at - stopped_at <= 2
        assert encoder_cpu <= 1.2 * ffmpeg_cpu


@pytest.mark.timeout(900)  # making the five-minute file takes a minute or two
def test_import_of_a_long_1080p_h264_file(tmp_path):
    from kiosk.cli import main

    minutes = 0.5 if QUICK else 5.0
    source, ffmpeg = tmp_path / "long.mp4", require_binary("ffmpeg")
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
                    "-t", str(60 * minutes), "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23",
                    "-profile:v", "high", "-level", "4.1", "-pix_fmt", "yuv420p", "-g", "30", str(source)],
                    check=True)
    size_mb = source.stat().st_size / 1e6
    argv = ["convert", str(source), "--patient-name", "BENCH^IMPORT", "--patient-id", "B2", "-o"]
    # As on a kiosk: Python keeps the modules' compiled bytecode (this variable, set on some build machines,
    # would have every run compile them again).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    commands = {
        "cp": lambda out: subprocess.run(["cp", str(source), str(out)], check=True),
        # The running kiosk (the touch UI's Files source, an inbox folder): its modules are loaded.
        "kiosk": lambda out: main([*argv, str(out)]),
        "kiosk convert": lambda out: subprocess.run([sys.executable, "-m", "kiosk", *argv, str(out)], check=True,
                                                    cwd=ROOT, stdout=subprocess.DEVNULL, env=env),
    }
    main([*argv, str(tmp_path / "warm-up")])  # the modules loaded, the source file read once
    times: dict[str, list[float]] = {name: [] for name in commands}
    for run in range(RUNS):  # the disk's speed varies from one write to the next: the best of several
        for name, command in commands.items():
            out = tmp_path / f"out-{run}-{len(times[name])}"
            # Each starts from the same state: nothing waiting to be written, no deletion pending.
            shutil.rmtree(tmp_path / "warm-up", ignore_errors=True)
            subprocess.run(["sync"], check=True)
            started = time.monotonic()
            command(out)
            subprocess.run(["sync"], check=True)  # written to the disk, as an import has to be
            times[name].append(time.monotonic() - started)
            shutil.rmtree(out) if out.is_dir() else out.unlink()
    best = {name: min(values) for name, values in times.items()}
    lines = "".join(f"\n  {name} + sync {best[name]:.2f} s ({', '.join(f'{t:.2f}' for t in times[name])})"
                    for name in commands)
    print(f"\n[bench] import of a {minutes:g}-minute 1080p H.264 MP4 ({size_mb:.0f} MB), best of {RUNS}:{lines}"
          f"\n  ratio to cp: {best['kiosk'] / best['cp']:.2f} in the running kiosk (target <= 1.5), "
          f"{best['kiosk convert'] / best['cp']:.2f} as a new process (Python and its libraries starting: "
          f"{best['kiosk convert'] - best['kiosk']:.2f} s)")
    if not QUICK:
        assert best["kiosk"] <= 1.5 * best["cp"]
