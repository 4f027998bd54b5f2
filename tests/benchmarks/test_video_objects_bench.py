"""Video objects benchmark (issue 15). Run: ``.venv/bin/pytest -s tests/benchmarks/test_video_objects_bench.py``.

A 20 s 640x480 H.264 clip of noise at a near-lossless quantizer (~290 MB; ``KIOSK_BENCH_QUICK=1``: 4 s)
becomes its Video Endoscopic object(s), written to a folder and queued in the outbox (fsynced, as a
station does), whole and split at 100 MB. Figures: time against ``cp`` of the same file plus an fsync,
and the growth of the process's resident memory while it runs (target: <= 20 MB, whatever the size:
nothing of the stream is held in memory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest

from kiosk.dicomize import Batch, BuildOptions, write_dataset
from kiosk.outbox import Outbox
from kiosk.outbox.destinations import parse_destination
from kiosk.study import StudyContext
from tests.support.outbox_helpers import outbox_config
from tests.support.peers import require_binary
from tests.support.video import clip_of

pytestmark = pytest.mark.benchmark
QUICK = os.environ.get("KIOSK_BENCH_QUICK") == "1"
SECONDS = 4 if QUICK else 20
MB = 1 << 20
STUDY = StudyContext.manual(patient_name="BENCH^VIDEO", patient_id="B1")


def _rss() -> int:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) * 1024


class _Peak:
    """The highest resident memory seen, sampled every 10 ms on a thread of its own."""

    def __init__(self) -> None:
        self.value, self._stop = _rss(), threading.Event()
        self._thread = threading.Thread(target=self._watch, name="rss-watch")

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            self.value = max(self.value, _rss())

    def __enter__(self) -> "_Peak":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "noise.mp4"
    subprocess.run([require_binary("ffmpeg"), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=640x480:rate=25,noise=alls=60:allf=t", "-t", str(SECONDS), "-c:v", "libx264",
                    "-preset", "ultrafast", "-qp", "4", "-profile:v", "high", "-pix_fmt", "yuv420p", "-g", "50",
                    str(path)], check=True)
    return path


@pytest.mark.parametrize("max_mb", [2000, 100])
def test_video_objects_are_written_in_flat_memory(tmp_path, big_clip, max_mb):
    pytest.importorskip("av")
    size = big_clip.stat().st_size
    started = time.perf_counter()
    shutil.copyfile(big_clip, tmp_path / "copy.mp4")
    with open(tmp_path / "copy.mp4", "rb+") as copy:
        os.fsync(copy.fileno())
    cp_seconds = time.perf_counter() - started
    (tmp_path / "copy.mp4").unlink()

    config = outbox_config(tmp_path)
    outbox = Outbox.from_config(config)
    name, spec = parse_destination(config, "PACS@127.0.0.1:104")  # never sent to: only queued
    (tmp_path / "out").mkdir()
    capture = clip_of(big_clip)
    base = _rss()
    with _Peak() as peak:
        started = time.perf_counter()
        batch = Batch(STUDY, BuildOptions(modality="ES", max_object_bytes=max_mb * MB))
        objects = 0
        for ds in batch.objects([capture]):
            write_dataset(ds, tmp_path / "out" / f"{objects}.dcm")
            outbox.accept_dataset(ds, {name: spec})
            objects += 1
        seconds = time.perf_counter() - started
    outbox.close()
    growth = (peak.value - base) / MB
    print(f"\nvideo objects: {size / MB:.0f} MB clip, max_object_mb {max_mb}: {objects} object(s) in "
          f"{seconds:.2f} s (folder and outbox, fsynced); cp + fsync {cp_seconds:.2f} s "
          f"(x{seconds / max(cp_seconds, 1e-9):.1f}, two copies written); resident memory +{growth:.1f} MB")
    assert objects == 1 if max_mb == 2000 else objects >= size // (100 * MB)
    assert growth <= 20
