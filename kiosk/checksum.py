"""SHA-256 of files: recorded when the outbox accepts a file, checked when it is delivered.

The check happens on the bytes a destination reads to deliver the file
(one read, not two): a file up to ``WHOLE_READ`` bytes is read at once and
checked before anything leaves; a bigger one is hashed first, then read
again as it is sent.
"""

from __future__ import annotations

import hashlib
import os
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO, Iterator

CHUNK = 1 << 20
WHOLE_READ = 4 << 20  # files up to this size are checked in memory


class FileChanged(Exception):
    """The file's content is not what was recorded; ``str()`` says which file."""


def open_checked(path: Path, sha256: str | None = None) -> BinaryIO:
    """``path`` opened for reading at its start (the caller closes it); checked to have ``sha256`` if given.

    A file up to ``WHOLE_READ`` bytes comes back read into memory (one read).
    Raises ``FileChanged`` when the check fails (a missing file fails it too),
    ``OSError`` when the file cannot be read.
    """
    # Descriptor calls, not a buffered file: four system calls for a small file,
    # each a chance for another thread to take the GIL while sending.
    handle = _open(path, sha256)
    try:
        size = os.fstat(handle).st_size
        if size <= WHOLE_READ:
            data = os.read(handle, size + 1)  # one more byte shows a file that grew
        elif sha256 is None or _sha256(handle) == sha256:
            os.lseek(handle, 0, os.SEEK_SET)
            return open(handle, "rb", buffering=0)  # owns the descriptor from here
        else:
            data = None
    except BaseException:
        os.close(handle)
        raise
    os.close(handle)
    if sha256 is not None and (data is None or hashlib.sha256(data).hexdigest() != sha256):
        raise FileChanged(_changed(path))
    return BytesIO(data)


def _open(path: Path, sha256: str | None) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if sha256 is None:
            raise
        raise FileChanged(f"{path} is missing") from None


def chunks(handle: int) -> Iterator[bytes]:
    """The rest of the file open as descriptor ``handle``, ``CHUNK`` bytes at a time."""
    while chunk := os.read(handle, CHUNK):
        yield chunk


def digest_file(handle: int, digest: Any) -> int:
    """Feed the whole file open as descriptor ``handle`` to the hashlib object ``digest``, ``CHUNK`` bytes
    at a time through one buffer (memory: one chunk); returns its size."""
    buffer = bytearray(CHUNK)
    view, size = memoryview(buffer), 0
    while read := os.preadv(handle, [buffer], size):
        digest.update(view[:read])
        size += read
    return size


def _sha256(handle: int) -> str:
    digest = hashlib.sha256()
    digest_file(handle, digest)
    return digest.hexdigest()


def _changed(path: Path) -> str:
    return f"{path} changed after it was accepted (its SHA-256 differs)"
