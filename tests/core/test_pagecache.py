"""A large file's write-back started stretch by stretch while it is written (kiosk.pagecache)."""

from __future__ import annotations

import os
import sys

import pytest

from kiosk import pagecache as writeback
from kiosk.pagecache import STRETCH, Writeback


def test_each_finished_stretch_is_started_once_and_in_order(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(writeback, "_sync_file_range", lambda fd, offset, length, flags: started.append((offset, length, flags)))
    progress = Writeback(fd=7, start=100)
    for end in (100 + STRETCH // 2, 100 + STRETCH + 1, 100 + STRETCH + 2, 100 + 3 * STRETCH):
        progress.written(end)
    assert started == [(100, STRETCH + 1, writeback.SYNC_FILE_RANGE_WRITE),
                       (100 + STRETCH + 1, 2 * STRETCH - 1, writeback.SYNC_FILE_RANGE_WRITE)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_the_kernel_takes_the_request_and_the_file_is_unchanged(tmp_path):
    data = os.urandom(STRETCH + 4096)
    fd = os.open(tmp_path / "big", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        assert writeback._sync_file_range is not None
        assert writeback._sync_file_range(fd, 0, len(data), writeback.SYNC_FILE_RANGE_WRITE) == 0
        Writeback(fd).written(len(data))
        assert os.pread(fd, len(data) + 1, 0) == data
    finally:
        os.close(fd)


def test_without_the_call_nothing_is_started_and_nothing_fails(monkeypatch):
    monkeypatch.setattr(writeback, "_sync_file_range", None)
    Writeback(fd=-1).written(10 * STRETCH)  # a bad descriptor is never touched
