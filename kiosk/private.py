"""Files and folders that hold patient data: 0600 files in 0700 folders, whatever the umask.

The kiosk's own writers (sessions, the log, output folders) ask for these
modes explicitly, so they hold when the code runs as a library too. The
``kiosk`` command also sets ``UMASK`` at start: writers that take no mode
(pydicom's DICOMDIR export, SQLite, the demo peers) then create private
files and folders as well.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
UMASK = 0o077


def private_dir(path: Path) -> None:
    """Create ``path`` as 0700, or make an existing folder 0700 (missing parents follow the umask)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    # mkdir leaves an existing folder as it is: one made before this rule, or under another umask.
    os.chmod(path, DIR_MODE)


def private_opener(path: str | os.PathLike[str], flags: int) -> int:
    """An ``opener`` for ``open()``: a new file is 0600, an existing one is made 0600."""
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_sqlite(path: Path) -> None:
    """A SQLite database holding patient data, with its WAL and shared-memory files, owner only."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists():
            file.chmod(FILE_MODE)


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (fsync, then rename), owner only.
    Writers in several threads each use a temporary file of their own: with one shared name, one
    thread's rename found its file already renamed by another (FileNotFoundError)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    with open(tmp, "wb", opener=private_opener) as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    """Make the names in folder ``path`` durable (after a create, rename or delete in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def try_lock(path: Path) -> int | None:
    """Take the exclusive lock on the (0600) lock file ``path``: its descriptor, held until closed;
    None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def unused_name(path: Path) -> Path:
    """``path``, or ``name~N.ext`` if it is taken: a file the kiosk writes or moves never replaces one."""
    candidate, n = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}~{n}{path.suffix}")
        n += 1
    return candidate
