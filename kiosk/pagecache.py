"""Having the disk write a large file while it is still being written.

Linux keeps what is written in memory until ``fsync`` (or until gigabytes are waiting), so the disk idles
while a clip's hundreds of megabytes are copied, or a medium's objects written, and all the writing waits
for the end. ``start_writeback`` has the disk start on a file now, and ``Writeback`` on each stretch of a
long file as soon as it is final (Linux ``sync_file_range``, which does not wait for it): the copy and the
disk work side by side, and the final ``fsync`` or flush has little left to do.

Where the call is missing (not Linux), nothing starts early: the ``fsync`` writes everything, as it would
anyway.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Callable

STRETCH = 16 << 20  # bytes: written in pieces this size, each a few milliseconds of the disk's time
SYNC_FILE_RANGE_WRITE = 2  # start writing the range's dirty pages; do not wait


def _load() -> Callable[[int, int, int, int], int] | None:
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return call


_sync_file_range = _load() if sys.platform.startswith("linux") else None


def start_writeback(fd: int, offset: int = 0, length: int = 0) -> None:
    """Have the kernel start writing ``length`` bytes of the open file ``fd`` from ``offset`` (0: up to
    its end) to disk now, without waiting for it."""
    if _sync_file_range is not None:
        # Advisory: a failure here only leaves the writing to the fsync.
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


class Writeback:
    """The write-back of the file open as ``fd``, started stretch by stretch from offset ``start`` as the
    writer reports how far the file is final (``written``)."""

    def __init__(self, fd: int, start: int = 0) -> None:
        self.fd, self.started = fd, start

    def written(self, end: int) -> None:
        """Everything before offset ``end`` is final: start writing it once a stretch is waiting."""
        if end - self.started >= STRETCH:
            start_writeback(self.fd, self.started, end - self.started)
            self.started = end
