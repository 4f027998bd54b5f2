"""A watched folder's files: which are ready to take, and where each goes once handled.

Every file dropped into a watched folder (``[inbox] folder``, and the print folder) ends up in one
of its subfolders, so an administrator always knows where it is:

* ``done/``: its objects are in the outbox (deleted after ``[inbox] done_days``; its modification
  time there is when it was done);
* ``held/``: it waits in the touch UI's Inbox (which holds a copy); once sent from there it moves
  to ``done/``, once discarded there to ``failed/``;
* ``failed/``: it cannot be used; ``<file>.reason`` beside it says why and what to do.

A file is taken only once it has settled: its size and times unchanged for ``settle_seconds``
(a copy in progress keeps changing them) and no other program holding a lock on it. Temporary
names (``.part``, ``.tmp``, ``.crdownload``, ``~$x``, hidden files) are never taken.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from kiosk.private import unused_name

log = logging.getLogger(__name__)

DONE, HELD, FAILED = "done", "held", "failed"
SUBFOLDERS = (DONE, HELD, FAILED)
REASON_SUFFIX = ".reason"
TEMPORARY_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".filepart", ".swp",
                      REASON_SUFFIX)


def is_temporary(name: str) -> bool:
    """A name copy programs, browsers and editors give a file still being written (or a lock file)."""
    lower = name.lower()
    return name.startswith((".", "~$", "~")) or lower.endswith(TEMPORARY_SUFFIXES) or lower.endswith("~")


@dataclass(frozen=True)
class Look:
    """A file as last seen: size, modification and change times (nanoseconds)."""

    size: int
    mtime: int
    ctime: int


class Settling:
    """Which files have stayed unchanged for ``settle_seconds``.

    A watcher that keeps running (``remember``) takes a file once it has seen it unchanged (size,
    modification and change time) for that long: a share's clock may differ from ours. A single
    run (``--once``) has only the file's own times: the later of its modification and change time
    must be that old (a copy that keeps the source's modification time still changes the change
    time as it writes).
    """

    def __init__(self, settle_seconds: float, remember: bool = True) -> None:
        self.settle = settle_seconds
        self.remember = remember
        self._seen: dict[Path, tuple[Look, float]] = {}  # path -> (look, monotonic time it was first seen so)

    def ready(self, path: Path) -> bool:
        try:
            info = path.stat()
        except OSError:
            self._seen.pop(path, None)
            return False
        if self.remember:
            look, clock = Look(info.st_size, info.st_mtime_ns, info.st_ctime_ns), time.monotonic()
            before = self._seen.get(path)
            if before is None or before[0] != look:
                self._seen[path] = (look, clock)
                return False
            settled = clock - before[1] >= self.settle
        else:
            settled = time.time() - max(info.st_mtime, info.st_ctime) >= self.settle
        return settled and not _locked(path)

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)

    def keep_only(self, paths: set[Path]) -> None:
        """Forget files that are gone (moved away, deleted by someone else)."""
        for path in set(self._seen) - paths:
            del self._seen[path]


def _locked(path: Path) -> bool:
    """Whether another program holds a lock on the file (a writer that locks while it writes; on an
    SMB share, a Windows program still writing refuses even opening it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return exc.errno in (errno.EACCES, errno.EBUSY, errno.ETXTBSY, errno.EAGAIN)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN)
    finally:
        os.close(fd)


def candidates(folder: Path) -> list[Path]:
    """The files directly in ``folder`` that may be documents (not subfolders, not temporary names), by name."""
    try:
        entries = sorted(folder.iterdir())
    except FileNotFoundError:
        return []
    return [p for p in entries if not is_temporary(p.name) and p.is_file()]


def move_aside(path: Path, base: Path, to: str, why: str = "", also: tuple[Path, ...] = ()) -> Path:
    """Move ``path`` (and ``also``, e.g. a print job's sidecar) into ``base/<to>/`` (``base``: the
    watched folder), writing ``<file>.reason`` with ``why`` beside it; returns the new path.
    Never overwrites: a name taken there gets ``~N``."""
    target_dir = base / to
    target_dir.mkdir(exist_ok=True)
    target = unused_name(target_dir / path.name)
    if why:
        reason = target.with_name(target.name + REASON_SUFFIX)
        reason.write_text(f"{why}\n", encoding="utf-8")
    os.rename(path, target)
    for extra in also:
        if extra.exists():
            os.rename(extra, unused_name(target.with_suffix(extra.suffix)))
    if to == DONE:
        os.utime(target)  # done_days counts from now
    return target



def remove_old_done(folder: Path, days: float, now: float | None = None) -> int:
    """Delete files in ``folder/done/`` done more than ``days`` ago (0: keep them); returns how many."""
    if days <= 0:
        return 0
    limit = (now if now is not None else time.time()) - days * 86400
    removed = 0
    try:
        entries = list((folder / DONE).iterdir())
    except FileNotFoundError:
        return 0
    for path in entries:
        try:
            if path.is_file() and path.stat().st_mtime < limit:
                path.unlink()
                removed += 1
        except OSError as exc:
            log.warning("inbox: %s could not be deleted (%s)", path, exc.strerror)
    if removed:
        log.info("inbox: deleted %d file(s) done more than %g day(s) ago in %s", removed, days, folder / DONE)
    return removed


def now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")
