"""The SANE driver against SANE's real ``test`` backend (private SANE_CONFIG_DIR)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from drivers.device import Settings
from drivers.errors import CancelledError, CoverOpenError, DeviceBusyError, NoDeviceError, OutOfPaperError, PaperJamError
from drivers.presets import preset
from drivers.registry import open_device
from kiosk.capture import SourceKind

A4 = (0.0, 0.0, 210.0, 297.0)


def test_colour_a4_at_300_dpi(sane_device):
    scanner = sane_device()
    effective = scanner.configure(Settings(mode="color", depth=8, dpi=300, source="flatbed", area_mm=A4))
    assert (effective.mode, effective.depth, effective.dpi) == ("color", 8, 300)
    scanner.set_option("test_picture", "Color pattern")
    steps = []
    capture = scanner.acquire(steps.append)
    assert capture.pixels.shape == (3507, 2480, 3) and capture.pixels.dtype == np.uint8
    assert capture.dpi == 300 and capture.kind is SourceKind.SCANNED_DOCUMENT
    assert capture.source == "sane:test:0"
    assert len(np.unique(capture.pixels.reshape(-1, 3)[::997], axis=0)) > 4  # a real colour pattern
    assert steps and steps[-1].fraction == pytest.approx(1.0)


def test_16_bit_gray_film(sane_device):
    scanner = sane_device()
    effective = scanner.configure(preset("Film").merged(area_mm=(0, 0, 100, 120), dpi=150))
    assert (effective.mode, effective.depth) == ("gray", 16)
    assert effective.source == "flatbed"  # the test backend has no transparency unit: flatbed is used
    scanner.set_option("test_picture", "Grid")
    capture = scanner.acquire()
    assert capture.pixels.dtype == np.uint16 and capture.pixels.ndim == 2
    assert capture.bits_stored == 16 and capture.kind is SourceKind.DIGITIZED_FILM
    assert capture.pixels.shape == (int(120 / 25.4 * 150), int(100 / 25.4 * 150))  # the backend truncates
    # scan() would return garbage here; arr path: the grid is pure black and white 16-bit.
    assert set(np.unique(capture.pixels)) == {0, 65535}


def test_settings_are_read_back_when_clamped(sane_device):
    scanner = sane_device()
    effective = scanner.configure(Settings(mode="gray", depth=8, dpi=5000, area_mm=(0, 0, 20, 20)))
    assert effective.dpi == 1200  # the test backend's maximum
    capture = scanner.acquire()
    assert capture.dpi == 1200 and capture.pixels.shape == (944, 944)


def test_adf_batch_of_ten_pages(sane_device):
    scanner = sane_device()
    scanner.configure(Settings(mode="gray", depth=8, dpi=75, source="adf", area_mm=A4))
    pages = list(scanner.batch())
    assert [p.index for p in pages] == list(range(10))
    assert all(p.pixels.shape == (876, 620) for p in pages)


def test_jam_mid_batch_keeps_the_pages_scanned(sane_device):
    scanner = sane_device()
    scanner.configure(Settings(mode="gray", dpi=75, source="adf", area_mm=A4))
    pages = []
    with pytest.raises(PaperJamError, match="jammed") as error:
        for page in scanner.batch():
            pages.append(page)
            if len(pages) == 3:
                scanner.set_option("read_return_value", "SANE_STATUS_JAMMED")
    assert len(pages) == 3
    assert "clear the paper path" in error.value.hint


@pytest.mark.parametrize("status, error", [
    ("SANE_STATUS_COVER_OPEN", CoverOpenError),
    ("SANE_STATUS_JAMMED", PaperJamError),
    ("SANE_STATUS_NO_DOCS", OutOfPaperError),
])
def test_faults_are_typed(sane_device, status, error):
    scanner = sane_device()
    scanner.configure(Settings(mode="gray", dpi=75, source="adf"))
    scanner.set_option("read_return_value", status)
    with pytest.raises(error) as raised:
        list(scanner.batch())
    assert raised.value.message.startswith("scanner test:0: ") and raised.value.hint


def test_device_busy_when_opened_twice(sane_device):
    sane_device("test:1")
    with pytest.raises(DeviceBusyError, match="busy"):
        open_device("sane:test:1")


def test_missing_device(sane_test_backend):
    with pytest.raises(NoDeviceError, match="no scanner named 'test:7'"):
        open_device("sane:test:7")


def test_cancel_mid_scan_gives_no_partial_image(sane_device):
    scanner = sane_device()
    scanner.configure(Settings(mode="color", dpi=300, area_mm=A4))
    scanner.set_option("read_delay", True)
    scanner.set_option("read_delay_duration", 10000)  # ~5 s for the page
    threading.Timer(0.5, scanner.cancel).start()
    started = time.monotonic()
    with pytest.raises(CancelledError):
        scanner.acquire()
    assert time.monotonic() - started < 2.0
    scanner.set_option("read_delay", False)
    assert scanner.acquire().pixels.shape == (3507, 2480, 3)  # the device is usable again


def test_a_failing_progress_callback_cannot_crash_the_scan(sane_device):
    scanner = sane_device()
    scanner.configure(Settings(mode="gray", dpi=75, area_mm=(0, 0, 50, 50)))

    def broken(_step):
        raise RuntimeError("a buggy UI callback")

    assert scanner.acquire(broken).pixels.shape == (147, 147)


def test_a_backend_thread_counts_as_settled_when_blocked_in_io_or_gone_not_while_running():
    import ctypes

    from drivers.sane import _blocked_in_io_or_gone, _native_threads, _settle

    if not _native_threads():
        pytest.skip("no /proc/self/task on this system")
    assert not _blocked_in_io_or_gone(threading.get_native_id())  # this thread is running
    assert _blocked_in_io_or_gone(2**22 + 12345)  # no such thread
    libc = ctypes.CDLL(None)
    before = _native_threads()
    sleeper = ctypes.c_ulong()
    # A thread no Python code knows of, as a backend's reader: libc's sleep(1) as its start routine.
    start = ctypes.cast(libc.sleep, ctypes.c_void_p)
    assert libc.pthread_create(ctypes.byref(sleeper), None, start, ctypes.c_void_p(1)) == 0
    try:
        (new,) = _native_threads() - before
        deadline = time.monotonic() + 1
        while not _blocked_in_io_or_gone(new) and time.monotonic() < deadline:
            time.sleep(0.001)
        started = time.monotonic()
        _settle(before)
        assert time.monotonic() - started < 0.5  # blocked in the kernel: no need to wait
    finally:
        libc.pthread_join(sleeper, None)
    assert _blocked_in_io_or_gone(new)


def test_a_socket_whose_peer_is_gone_raises_after_a_scan_instead_of_killing_the_process(sane_test_backend):
    """sanei_thread leaves SIGPIPE at its default (terminate) after a page: the driver sets it back to
    ignored, so writing to a closed socket (a PACS that hung up) raises BrokenPipeError in a kiosk that
    scanned. In a child process: without the fix SIGPIPE kills it."""
    import subprocess
    import sys

    from tests.support.paths import ROOT

    code = """
import socket
from drivers.device import Settings
from drivers.registry import open_device
with open_device("sane:test:0") as scanner:
    scanner.configure(Settings(mode="gray", depth=8, dpi=75, source="flatbed"))
    scanner.acquire()
with open_device("sane:test:1") as feeder:  # a fresh handle: the test backend counts pages since open
    feeder.configure(Settings(mode="gray", depth=8, dpi=75, source="adf"))
    assert len(list(feeder.batch())) == 10
ours, theirs = socket.socketpair()
theirs.close()
try:
    for _ in range(3):
        ours.send(b"x" * 65536)
except BrokenPipeError:
    print("EPIPE")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "EPIPE", (result.returncode, result.stderr)
