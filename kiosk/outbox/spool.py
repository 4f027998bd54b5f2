"""The spool: accepted instances as files, written atomically, readable only by us.

Each file is written to ``tmp/<random>.part``, made durable (fsync, or one
``syncfs`` for a batch), renamed to ``files/<random>.dcm`` and the directory
fsynced, so a file under ``files/`` is always complete. Every accepted
instance gets a file of its own (shared by its destinations), so deleting one
never touches another. Leftover ``.part`` files are the half-written files
of a crash: the journal never refers to them, so they are never sent, and
recovery deletes them. The SHA-256 kept in the journal lets delivery detect
a file damaged after it was accepted (``kiosk.checksum``).

Next to each file, ``files/<random>.json`` is its *record*: what it was
accepted for (destinations, the user's file name, SHA-256...), written and
made durable in the same batch. It lets ``kiosk outbox recover`` rebuild the
jobs when the journal is lost; nothing here deletes a file the journal does
not know.

A file may also wait to be written (``put_linked``): ``files/<random>.source``,
a hard link to the file its content is made from (a recording), with the
recipe in the record; ``prepare`` writes it out as above (the ``.dcm`` file
renamed into place before the record stops saying "prepare", so a crash in
between means preparing again) and then drops the link.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Sequence, TypeVar

from kiosk.checksum import chunks
from kiosk.errors import KioskError
from kiosk.private import FILE_MODE, fsync_dir, private_dir

log = logging.getLogger(__name__)

MB = 1 << 20
#: Kept free even with min_free_mb = 0: the journal needs room to record deliveries,
#: or a full disk would stop the very sending that frees it.
JOURNAL_RESERVE = 256 * 1024
PARALLEL_WRITES = 8
RECORD = ".json"  # suffix of a spool file's record
SOURCE = ".source"  # suffix of the link to the file a spool file waiting to be written is made from
#: Why a hard link cannot be made: another file system, or one without hard links (or too many).
NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP}

T = TypeVar("T")


class OutboxFullError(KioskError):
    """The spool disk is (nearly) full: new images are refused, nothing accepted is lost."""


class SpoolError(KioskError):
    """The spool directory cannot be used (permissions, missing disk...)."""


@dataclass(frozen=True)
class SpoolEntry:
    """One complete file in the spool."""

    name: str
    sha256: str
    size: int


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs() if sys.platform.startswith("linux") else None


def _sync_filesystem(fd: int) -> None:
    """Write everything cached for the file system holding ``fd`` to disk (Linux ``syncfs``)."""
    if _syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


#: A written part: (its path, SHA-256, size).
Part = tuple[str, str, int]
#: Writes a file's content into the binary file it is given, feeding the same bytes in order to the
#: hashlib object it is given (``kiosk.part10.save``).
Writer = Callable[[BinaryIO, Any], None]
WRITE_BUFFER = 1 << 20  # a writer's small pieces (element headers) are gathered into writes of this size


def _record_part(part: str) -> str:
    return f"{part[:-len('.part')]}{RECORD}.part"


def _discard(parts: Iterable[Part]) -> None:
    """Delete written parts (and their records) that will not be published."""
    for part, _digest, _size in parts:
        _unlink(_record_part(part))
        _unlink(part)


def _link(source: Path, link: str) -> bool:
    """Hard-link ``source`` as ``link``; False when this disk cannot (``NO_LINK``)."""
    try:
        os.link(source, link)
    except OSError as exc:
        if exc.errno in NO_LINK:
            return False
        raise
    return True


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def megabytes(count: int) -> str:
    """``count`` bytes for people: "500 MB", "0.25 MB"."""
    value = round(count / MB, 2)
    return f"{value:.0f} MB" if value == int(value) else f"{value} MB"



class Spool:
    """Files waiting for delivery under ``root`` (``files/``, ``tmp/``)."""

    def __init__(self, root: Path, min_free_bytes: int = 0) -> None:
        self.root = Path(root)
        self.files = self.root / "files"
        self.tmp = self.root / "tmp"
        self._files, self._tmp = str(self.files), str(self.tmp)
        self.min_free_bytes = min_free_bytes
        try:
            for folder in (self.root, self.files, self.tmp):
                private_dir(folder)
        except OSError as exc:
            raise SpoolError(
                f"cannot use the outbox folder {self.root}: {exc.strerror}",
                "set [outbox] spool_dir to a folder this user can write, on a local disk",
            ) from None

    def path(self, name: str) -> Path:
        return self.files / name

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    @property
    def keep_bytes(self) -> int:
        """Bytes that must stay free on the spool's disk."""
        return max(self.min_free_bytes, JOURNAL_RESERVE)

    def check_free(self, needed: int = 0) -> None:
        """Raise ``OutboxFullError`` unless ``needed`` bytes fit above the free-disk threshold."""
        free = self.free_bytes()
        keep = self.keep_bytes
        if free - needed < keep:
            raise OutboxFullError(
                f"the outbox disk is full: {free / MB:.1f} MB free, {megabytes(keep)} must stay free"
                f"{f' after these {needed / MB:.1f} MB' if needed else ''}; new images are refused so that "
                "nothing already accepted is lost",
                f"send or remove waiting jobs ('kiosk outbox list'), lower [outbox] retention_hours, "
                f"or free space on the disk holding {self.root}",
            )

    def put_bytes(self, data: bytes, record: dict[str, Any]) -> SpoolEntry:
        """Store ``data`` durably, with ``record`` (JSON-able) as its record; returns its entry."""
        return self._publish([self._guard(lambda: self._write_part([data], record))])[0]

    def put_written(self, write: Writer, record: dict[str, Any], check: Callable[[Path], None]) -> SpoolEntry:
        """Store what ``write`` writes durably, with ``record``, as ``put_bytes`` does, but streamed:
        a file far larger than memory (a video object) passes through in pieces. ``check(path)``
        looks at the written file before it is published; what it raises keeps the file out."""
        part = self._guard(lambda: self._write_part(write, record))
        try:
            check(Path(part[0]))
        except BaseException:
            _discard([part])
            raise
        return self._publish([part])[0]

    def put_linked(self, source: Path, record: dict[str, Any], size: int) -> SpoolEntry | None:
        """Take ``source`` in without copying it: hard-linked as the source of a file of ``size`` bytes to be
        written later by ``prepare``, following the recipe in ``record["prepare"]``. The entry has no
        SHA-256 yet; None when this disk cannot link ``source`` (the caller copies it instead).

        ``source`` must never change again: it is fsynced here (what the outbox has is on disk), and its
        size and modification time are recorded so that ``prepare`` notices if it did."""
        stem = os.urandom(16).hex()
        link, record_file = f"{self._files}/{stem}{SOURCE}", f"{self._files}/{stem}{RECORD}"
        try:
            handle = os.open(source, os.O_RDONLY)
        except OSError as exc:
            raise SpoolError(f"cannot read {source}: {exc.strerror}", "record or import the clip again") from None
        try:
            self._guard(lambda: os.fsync(handle))
            stat = os.fstat(handle)
        finally:
            os.close(handle)
        recipe = {**record["prepare"], "source_size": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}
        part = f"{self._tmp}/{stem}{RECORD}.part"
        self._guard(lambda: _write_new(part, [json.dumps({**record, "prepare": recipe, "size": size}).encode()], True))
        try:
            self._guard(lambda: os.replace(part, record_file))  # the record first, as in _publish
            linked = self._guard(lambda: _link(source, link))
            if linked:
                self._guard(lambda: fsync_dir(self.files))
        except BaseException:
            for path in (part, link, record_file):
                _unlink(path)
            raise
        if not linked:
            _unlink(record_file)
            return None
        return SpoolEntry(f"{stem}.dcm", "", size)

    def prepare(self, name: str, write: Callable[[Path, dict[str, Any]], Writer],
                check: Callable[[Path, dict[str, Any]], None]) -> SpoolEntry:
        """Write out spool file ``name`` if it is still waiting (``put_linked``): ``write(source, recipe)``
        gives its writer, ``check(path, recipe)`` looks at it before it is published. Its entry, SHA-256 included,
        also when another thread or process prepared it first (one at a time: a lock on the link)."""
        source = self._source(name)
        try:
            lock = os.open(source, os.O_RDONLY)
        except FileNotFoundError:
            lock = None  # prepared already, or never linked: the record says which
        try:
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            record = self.record(name)
            if record is None:
                raise SpoolError(f"the outbox has lost the record of {name}", "capture or import the images again")
            recipe = record.get("prepare")
            if recipe is None:
                _unlink(str(source))  # left by a crash after the record was written
                return SpoolEntry(name, record["sha256"], record["size"])
            if lock is None:
                raise SpoolError(f"the clip the outbox's {name} is to be written from is missing",
                                 "capture or import the images again")
            done = {key: value for key, value in record.items() if key not in ("prepare", "size")}
            part, digest, size = self._guard(lambda: self._write_part(write(source, recipe), done))
            try:
                check(Path(part), recipe)
                self._guard(lambda: self._place(part, name))
            except BaseException:
                _discard([(part, digest, size)])
                raise
            _unlink(str(source))
            return SpoolEntry(name, digest, size)
        finally:
            if lock is not None:
                os.close(lock)

    def _place(self, part: str, name: str) -> None:
        """Publish a prepared part as ``name``: the file first, so that until its record is replaced too
        (no more "prepare"), preparing starts again after a crash."""
        os.replace(part, self.path(name))
        os.replace(_record_part(part), self.record_path(name))
        fsync_dir(self.files)

    def linked(self, name: str) -> bool:
        """Whether spool file ``name`` is still waiting to be written (``put_linked``)."""
        return self._source(name).exists()

    def _source(self, name: str) -> Path:
        """The link spool file ``name`` is written from while it waits (``put_linked``)."""
        return self.files / f"{name.removesuffix('.dcm')}{SOURCE}"

    def stamped(self, name: str) -> Path:
        """The file whose modification time says when ``name`` was accepted: itself, or its record while
        it waits to be written."""
        return self.record_path(name) if self.linked(name) else self.path(name)

    def put_files(self, sources: Sequence[Path], record: dict[str, Any]) -> list[SpoolEntry]:
        """Copy files into the spool durably, all or none; returns their entries in order.

        Each file's record is ``record`` plus ``original`` (the source's path),
        ``sha256`` and ``size``.

        Where the system has ``syncfs`` (Linux), the files are written and then
        made durable together with one file-system sync: one journal commit for
        the batch instead of one per file (accepting 10,000 small files took
        1.4 s of kernel time instead of 3.6 s). Elsewhere each file is fsynced,
        several in parallel. Then they are renamed and the folder fsynced once.
        """
        if _syncfs is None:
            return self._publish(self._copy_parallel(sources, record))
        return self._put_synced([lambda s=source: self._copy_part(s, record, durable=False) for source in sources])

    def put_many(self, items: Sequence[tuple[bytes, dict[str, Any]]]) -> list[SpoolEntry]:
        """Store each (data, record) durably, all or none; returns their entries in order. As in
        ``put_files``, one file-system sync makes them all durable where the system has ``syncfs``."""
        synced = _syncfs is not None
        return self._put_synced([lambda d=data, r=record: self._write_part([d], r, durable=not synced)
                                 for data, record in items], synced)

    def _put_synced(self, writers: Sequence[Callable[[], Part]], sync: bool = True) -> list[SpoolEntry]:
        """Run each part writer, make them all durable with one ``syncfs`` (``sync``), publish them."""
        parts: list[Part] = []
        try:
            folder = self._guard(lambda: os.open(self.tmp, os.O_RDONLY | os.O_DIRECTORY))
            try:
                # Opened before writing: syncfs then reports write-back errors of these files.
                for write in writers:
                    parts.append(self._guard(write))
                if sync:
                    self._guard(lambda: _sync_filesystem(folder))
            finally:
                os.close(folder)
        except BaseException:
            _discard(parts)
            raise
        return self._publish(parts)

    def _copy_parallel(self, sources: Sequence[Path], record: dict[str, Any]) -> list[Part]:
        """Copy and fsync in parallel (the file system then commits many fsyncs at once)."""
        with ThreadPoolExecutor(max_workers=min(PARALLEL_WRITES, max(len(sources), 1))) as pool:
            futures = [pool.submit(self._guard, lambda s=source: self._copy_part(s, record)) for source in sources]
        parts, errors = [], []
        for future in futures:
            try:
                parts.append(future.result())
            except KioskError as exc:
                errors.append(exc)
        if errors:
            _discard(parts)
            raise next((e for e in errors if isinstance(e, OutboxFullError)), errors[0])
        return parts

    def _copy_part(self, source: Path, record: dict[str, Any], durable: bool = True) -> Part:
        # Plain descriptors and str paths: accepting thousands of small files
        # spent a third of its Python time in pathlib and buffered I/O.
        try:
            handle = os.open(source, os.O_RDONLY)
        except OSError as exc:
            raise SpoolError(f"cannot read {source}: {exc.strerror}", "check that the file exists and is readable") from None
        try:
            return self._write_part(chunks(handle), {**record, "original": str(source)}, durable)
        finally:
            os.close(handle)

    def _write_part(self, pieces: Iterable[bytes] | Writer, record: dict[str, Any], durable: bool = True) -> Part:
        """Write ``tmp/<random>.part`` and its record ``tmp/<random>.json.part``, fsynced if ``durable``."""
        part = f"{self._tmp}/{os.urandom(16).hex()}.part"
        digest = hashlib.sha256()
        try:
            size = _write_new(part, pieces, durable, digest)
            _write_new(_record_part(part), [json.dumps({**record, "sha256": digest.hexdigest(), "size": size}).encode()],
                       durable)
        except BaseException:
            _unlink(_record_part(part))
            _unlink(part)
            raise
        return part, digest.hexdigest(), size

    def _publish(self, parts: list[Part]) -> list[SpoolEntry]:
        """Rename complete parts into ``files/`` and make the renames durable."""
        entries = []
        try:
            for part, digest, size in parts:
                stem = os.path.basename(part)[:-len('.part')]
                # The record first: a file under files/ always has one.
                os.replace(_record_part(part), f"{self._files}/{stem}{RECORD}")
                name = f"{stem}.dcm"
                os.replace(part, f"{self._files}/{name}")
                entries.append(SpoolEntry(name, digest, size))
            self._guard(lambda: fsync_dir(self.files))
        except BaseException:
            _discard(parts)
            for entry in entries:
                self.remove(entry.name)
            raise
        return entries

    def _guard(self, action: Callable[[], T]) -> T:
        """Run a write; turn OS errors into people's errors (a full disk into ``OutboxFullError``)."""
        try:
            return action()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.check_free()
                raise OutboxFullError(
                    "the outbox disk is full; the images were refused and nothing already accepted is lost",
                    f"free space on the disk holding {self.root} or send waiting jobs ('kiosk outbox list')",
                ) from None
            raise SpoolError(f"cannot write to the outbox {self.root}: {exc.strerror}",
                             "check the disk and the folder's permissions") from None

    def remove(self, name: str) -> None:
        """Delete a spool file and its record (only for files the journal recorded as done with)."""
        self.path(name).unlink(missing_ok=True)
        self._source(name).unlink(missing_ok=True)
        self.record_path(name).unlink(missing_ok=True)

    def record_path(self, name: str) -> Path:
        return self.files / f"{name.removesuffix('.dcm')}{RECORD}"

    def record(self, name: str) -> dict[str, Any] | None:
        """The record of spool file ``name``, or None if it has none (or it cannot be read)."""
        try:
            found = json.loads(self.record_path(name).read_bytes())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def names(self) -> list[str]:
        """The spool files, by name (those waiting to be written included)."""
        names = {path.name for path in self.files.glob("*.dcm")}
        return [*names, *(name for path in self.files.glob(f"*{SOURCE}")
                          if (name := f"{path.name.removesuffix(SOURCE)}.dcm") not in names)]

    def has_files(self) -> bool:
        return any(next(self.files.glob(pattern), None) is not None for pattern in ("*.dcm", f"*{SOURCE}"))

    def recover(self, known: set[str], min_age: float = 600.0) -> tuple[int, int]:
        """Delete half-written ``.part`` files and records without a file; count files no job refers to.

        Files the journal does not know are never deleted: they may be
        accepted images whose journal was lost (``kiosk outbox recover``
        queues them again). Only leftovers older than ``min_age`` seconds
        go, so a writer in another process that has not yet published them
        keeps its parts. Returns (partial, unknown).
        """
        cutoff = time.time() - min_age
        partial = 0
        for part in self.tmp.glob("*.part"):
            if _older(part, cutoff):
                part.unlink(missing_ok=True)
                partial += 1
        for record in self.files.glob(f"*{RECORD}"):
            if not record.with_suffix(".dcm").exists() and not record.with_suffix(SOURCE).exists() \
                    and _older(record, cutoff):
                record.unlink(missing_ok=True)
        for link in self.files.glob(f"*{SOURCE}"):  # linked, but the record never written (a crash)
            if not link.with_suffix(RECORD).exists() and _older(link, cutoff):
                link.unlink(missing_ok=True)
        unknown = sum(name not in known and _older(self.stamped(name), cutoff) for name in self.names())
        if partial:
            log.warning("outbox recovery: deleted %d half-written spool file(s)", partial)
        if unknown:
            log.warning("outbox: %d spool file(s) are not in the journal and are not delivered; "
                        "'kiosk outbox recover' queues them again", unknown)
        return partial, unknown


def _write_new(path: str, pieces: Iterable[bytes] | Writer, durable: bool, digest: Any = None) -> int:
    """Write ``pieces`` (or what a ``Writer`` writes and hashes) to a new 0600 file (fsynced if
    ``durable``), hashing them into ``digest``; returns the size."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        if callable(pieces):
            with open(fd, "wb", buffering=WRITE_BUFFER, closefd=False) as out:
                pieces(out, digest)
            size = os.fstat(fd).st_size
        else:
            size = 0
            for chunk in pieces:
                view = memoryview(chunk).cast("B")
                if digest is not None:
                    digest.update(view)
                size += len(view)
                while view:
                    view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
        return size
    finally:
        os.close(fd)


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False

