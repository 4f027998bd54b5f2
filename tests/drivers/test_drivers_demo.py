"""Demo scanner and camera: usable with no hardware, through the same interface."""

from __future__ import annotations

import time

import numpy as np
import pytest

from drivers.device import Settings
from drivers.errors import CancelledError, OutOfPaperError
from drivers.presets import preset
from drivers.registry import open_device
from drivers.demo_devices import ASSETS, PAGE_COUNT
from kiosk.capture import SourceKind


def test_committed_assets_are_small_and_present():
    files = sorted(ASSETS.glob("*.png"))
    assert [f.name for f in files] == ["film.png"] + [f"page-{n}.png" for n in range(1, PAGE_COUNT + 1)]
    assert sum(f.stat().st_size for f in files) < 200_000


def test_demo_scanner_adf_batch():
    with open_device("demo:scanner") as scanner:
        effective = scanner.configure(Settings(mode="gray", depth=8, dpi=150, source="adf"))
        assert effective.source == "adf"
        pages = list(scanner.batch())
    assert [p.index for p in pages] == [0, 1, 2]
    assert all(p.pixels.shape == (1754, 1240) and p.dpi == 150 for p in pages)
    assert all(p.kind is SourceKind.SCANNED_DOCUMENT for p in pages)
    assert not np.array_equal(pages[0].pixels, pages[1].pixels)


def test_demo_scanner_colour_clamps_and_longer_feeder():
    with open_device("demo:scanner?pages=5") as scanner:
        assert scanner.configure(Settings(mode="color", dpi=2000, source="adf")).dpi == 600
        scanner.configure(Settings(dpi=75))
        pages = list(scanner.batch())
    assert len(pages) == 5 and pages[0].pixels.shape == (877, 620, 3)


def test_demo_scanner_film_is_16_bit_digitized_film():
    with open_device("demo:scanner") as scanner:
        scanner.configure(preset("Film"))
        capture = scanner.acquire()
    assert capture.kind is SourceKind.DIGITIZED_FILM and capture.pixels.dtype == np.uint16
    assert capture.pixels.max() > 255 * 256  # uses the full 16 bits


def test_demo_scanner_empty_feeder_and_cancel():
    with open_device("demo:scanner?pages=0") as scanner:
        scanner.configure(Settings(source="adf"))
        with pytest.raises(OutOfPaperError):
            list(scanner.batch())
    with open_device("demo:scanner") as scanner:
        scanner.configure(Settings(dpi=600, source="adf"))
        batch = scanner.batch(lambda step: scanner.cancel() if step.page == 1 else None)
        assert next(batch).index == 0
        with pytest.raises(CancelledError):
            next(batch)


def test_demo_camera_moves_at_30_fps():
    with open_device("demo:camera") as camera:
        assert camera.capabilities().preview
        first = camera.acquire()
        started, count = time.monotonic(), 0
        for _frame in camera.frames():
            count += 1
            if time.monotonic() - started >= 1.0:
                break
        last = camera.acquire()
    assert 15 <= count <= 32  # 30 when the machine is idle; never faster than the pace
    assert first.kind is SourceKind.VIDEO_FRAME and first.frame_rate == 30
    assert not np.array_equal(first.pixels, last.pixels)


def test_demo_camera_records_a_clip(tmp_path):
    pytest.importorskip("av", reason="PyAV is not installed (pip install kiosk[video])")
    from kiosk.config import VideoConfig
    from kiosk.video.recorder import record_clip

    with open_device("demo:camera") as camera:
        camera.configure(Settings(width=320, height=240))
        clip = record_clip(camera, 0.5, tmp_path, VideoConfig(reserve_mb=0))
    assert clip.is_clip and clip.encoded_path.parent == tmp_path and clip.frame_rate == 30
    assert clip.video.codec == "h264" and (clip.video.width, clip.video.height) == (320, 240)
    assert 5 <= clip.video.frames <= 15 and clip.pixels.shape == (240, 320, 3)
    assert "lossy_history" not in clip.metadata  # raw pixels: the encoding is the only lossy step
