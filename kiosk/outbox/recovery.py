"""Rebuilding jobs from the spool when the journal is lost or damaged (``kiosk outbox recover``).

Every spool file is a complete Part 10 file with a record next to it (its
destinations, storage commitment, the user's file name, when it was
accepted; see ``kiosk.outbox.spool``), or a clip linked into the spool
with its record, which is written out first (``kiosk.outbox.linked``). A damaged journal is moved aside,
never deleted; a missing or empty one is replaced by a fresh journal. Then
every spool file the journal does not know gets its jobs again, ``queued``.
Jobs delivered before the loss whose files were already removed do not come
back; those whose files remain are sent again (the same SOP Instance UID:
harmless to a PACS, where losing one is not).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.errors import KioskError
from kiosk.outbox.core import JOURNAL_NAME, OutboxSettings, lock_delivery
from kiosk.outbox.journal import Accepted, Journal, JournalDamagedError, journal_present
from kiosk.outbox.linked import prepare
from kiosk.outbox.spool import MB, Spool, SpoolEntry, SpoolError
from kiosk.part10 import read_meta

#: With a sound journal, files younger than this may be another process's accept not yet journaled.
RECENT = 600.0


@dataclass
class Recovered:
    """What ``recover_journal`` did."""

    moved_to: Path | None = None  # where the damaged journal went
    fresh: bool = False  # a new journal was started
    queued: dict[str, int] = field(default_factory=dict)  # destination -> jobs rebuilt
    files: int = 0  # spool files given jobs again
    known: int = 0  # spool files the journal already had
    recent: int = 0  # left alone: perhaps being accepted right now
    unusable: list[tuple[str, str]] = field(default_factory=list)  # (spool file, why), left in place


def recover_journal(settings: OutboxSettings) -> Recovered:
    """Make the journal usable again and queue every spool file it does not know; see the module doc."""
    spool = Spool(settings.spool_dir, settings.min_free_mb * MB)
    lock = lock_delivery(settings.spool_dir)
    if lock is None:
        raise KioskError(f"a delivery is running from {settings.spool_dir}",
                         "stop it first (systemctl stop kiosk-outbox, or close the kiosk), then recover")
    try:
        result = Recovered()
        try:
            journal = _open_sound(spool.root / JOURNAL_NAME, result)
            try:
                _rebuild(spool, journal, result)
            finally:
                journal.close()
        except sqlite3.OperationalError as exc:
            raise SpoolError(f"the outbox journal cannot be written: {exc}",
                             f"check the disk holding {settings.spool_dir} (is it full?), then recover again") from None
        return result
    finally:
        os.close(lock)


def _open_sound(path: Path, result: Recovered) -> Journal:
    """The journal at ``path`` if it is sound; else a fresh one (a damaged one moved aside first)."""
    if journal_present(path):
        try:
            journal = Journal(path)
        except JournalDamagedError:
            journal = None
        else:
            try:
                journal.check()
                return journal
            except JournalDamagedError:
                journal.close()
        result.moved_to = _move_aside(path)
    else:
        # A stale write-ahead log must not be replayed into the new journal.
        _move_aside(path)
    result.fresh = True
    return Journal(path)


def _move_aside(path: Path) -> Path:
    """Rename the journal and its WAL files to ``<name>.damaged-<time>*``; returns the journal's new path."""
    target = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, target.with_name(target.name + suffix))
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def _rebuild(spool: Spool, journal: Journal, result: Recovered) -> None:
    known = journal.live_spool_names()
    cutoff = time.time() - (0 if result.fresh else RECENT)
    groups: dict[str, tuple[dict[str, Any], set[str], list[Accepted]]] = {}
    for name in sorted(spool.names()):
        if name in known:
            result.known += 1
            continue
        path = spool.path(name)
        try:
            if spool.stamped(name).stat().st_mtime > cutoff:
                result.recent += 1
                continue
            if spool.linked(name):
                prepare(spool, name)
            meta = read_meta(path)
        except FileNotFoundError:
            continue  # delivered and removed meanwhile
        except (OSError, KioskError) as exc:
            result.unusable.append((name, getattr(exc, "message", None) or str(exc)))
            continue
        record = spool.record(name) or {}
        destinations = record.get("destinations")
        if not isinstance(destinations, dict) or not destinations or not isinstance(record.get("sha256"), str):
            result.unusable.append((name, "it has no record of where it was to be sent"))
            continue
        commitment = set(record.get("commitment") or ())
        item = Accepted(SpoolEntry(name, record["sha256"], int(record.get("size", 0))), meta.sop_instance_uid,
                        meta.sop_class_uid, meta.transfer_syntax, str(record.get("original", "")), record.get("accepted"))
        key = json.dumps([destinations, sorted(commitment)], sort_keys=True)
        groups.setdefault(key, (destinations, commitment, []))[2].append(item)
    for destinations, commitment, items in groups.values():
        jobs = journal.add(items, destinations, commitment, only_new=True)
        result.files += len(next(iter(jobs.values())))
        for name, ids in jobs.items():
            result.queued[name] = result.queued.get(name, 0) + len(ids)
