"""The outbox as one object: accept instances durably, query and manage jobs, publish events.

``Outbox`` joins the spool (files), the journal (job states) and the event
bus. Accepting is durable before it returns: files (and their records) are
fsynced and renamed, then the journal transaction commits (synchronous=FULL).
It refuses to open a missing or empty journal next to spool files: those
images would be forgotten (``kiosk outbox recover`` rebuilds their jobs). Delivery itself is
``kiosk.outbox.worker.Delivery``; one process at a time holds the delivery
lock of a spool.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from kiosk.config import Config, OutboxConfig, values_of
from kiosk.dataset_check import check_complete, check_written
from kiosk.errors import KioskError, UsageError
from kiosk.outbox import events as ev
from kiosk.outbox.journal import FAILED, RECOVER_HINT, Accepted, Job, Journal, JournalLostError, Update, journal_present
from kiosk.outbox.linked import accept_linked, prepare
from kiosk.outbox.spool import JOURNAL_RESERVE, MB, OutboxFullError, Spool, SpoolError, megabytes
from kiosk.outbox.steps import StepQueue
from kiosk.part10 import FileMeta, NotPart10Error, read_meta, save, set_file_meta, streamed_size
from kiosk.private import try_lock

JOURNAL_NAME = "journal.sqlite"
STEPS_NAME = "steps.sqlite"  # performed procedure step (MPPS) messages
ACCEPT_CHUNK = 200  # files per journal transaction in accept_files
LOCK_NAME = "delivery.lock"
STREAMED_HEADER = 1 << 20  # room counted for a streamed object's header, over its pixel data


@dataclass(frozen=True)
class OutboxSettings(OutboxConfig):
    """The ``[outbox]`` section (its defaults), with the spool folder resolved."""

    spool_dir: Path  # type: ignore[assignment]  # resolved: a folder, not the configured text

    @classmethod
    def from_config(cls, config: Config) -> "OutboxSettings":
        section = config.outbox
        folder = section.spool_dir
        if not folder:
            import platformdirs

            folder = str(Path(platformdirs.user_data_dir("kiosk", appauthor=False)) / "outbox")
        return cls(**{**values_of(section), "spool_dir": Path(folder).expanduser()})

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt number ``attempts + 1``: doubling from retry_interval, capped."""
        return min(self.retry_interval * 2 ** max(attempts - 1, 0), self.retry_max_interval)


class Outbox:
    """Spool + journal + events of one spool folder."""

    def __init__(self, settings: OutboxSettings, read_only: bool = False) -> None:
        """Open the spool folder; ``read_only`` (for listing) works on a full disk too."""
        self.settings = settings
        self.spool = Spool(settings.spool_dir, settings.min_free_mb * MB)
        path = settings.spool_dir / JOURNAL_NAME
        if not journal_present(path) and self.spool.has_files():
            raise JournalLostError(
                f"the outbox journal {path} is missing or empty, but {len(self.spool.names())} image(s) wait in "
                f"{self.spool.files}; nothing is sent or queued until their jobs are rebuilt", RECOVER_HINT)
        try:
            self.journal = Journal(path, read_only)
        except sqlite3.OperationalError as exc:
            raise self._unusable(exc) from None
        self.events = ev.EventBus()
        self._steps: StepQueue | None = None

    @property
    def steps(self) -> StepQueue:
        """The performed procedure step messages waiting to go (opened on first use)."""
        if self._steps is None:
            self._steps = StepQueue(self.settings.spool_dir / STEPS_NAME)
        return self._steps

    def has_steps(self) -> bool:
        """Whether MPPS messages were ever queued here (the file is never created only to look:
        no MPPS configured, or a full disk)."""
        return self._steps is not None or (self.settings.spool_dir / STEPS_NAME).exists()

    def step_messages(self, limit: int = 200) -> list[Any]:
        """The latest MPPS messages (``kiosk.outbox.steps.StepMessage``); none if none was ever queued."""
        return self.steps.messages(limit=limit) if self.has_steps() else []

    def next_step_due(self) -> float | None:
        """When the next MPPS message falls due (``StepQueue.next_due``); None if none waits."""
        return self.steps.next_due() if self.has_steps() else None

    def queue_step(self, step_uid: str, action: str, step_status: str, label: str, node: str,
                   spec: dict[str, Any], dataset: dict[str, Any]) -> int:
        """Queue one MPPS message durably (after every earlier one of its step); its id."""
        message_id = self.steps.add(step_uid, action, step_status, label, node, spec, dataset)
        self.events.publish(ev.StepQueued(message_id, step_uid))
        return message_id

    def _unusable(self, exc: sqlite3.OperationalError) -> KioskError:
        """The error for a journal SQLite cannot open: a full disk says so, with what to do."""
        free = self.spool.free_bytes()
        if free < JOURNAL_RESERVE or getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return OutboxFullError(
                f"the outbox disk is full ({megabytes(free)} free): the outbox journal cannot be opened ({exc}); "
                "nothing in the outbox is lost",
                f"free at least {megabytes(self.spool.keep_bytes)} on the disk holding {self.settings.spool_dir}: "
                "delete or move other programs' files there")
        return SpoolError(f"the outbox journal {self.settings.spool_dir / JOURNAL_NAME} cannot be opened: {exc}",
                          "check the disk holding the outbox (the system log tells of disk errors) and its permissions")

    @classmethod
    def from_config(cls, config: Config) -> "Outbox":
        return cls(OutboxSettings.from_config(config))

    def close(self) -> None:
        self.journal.close()
        if self._steps is not None:
            self._steps.close()

    # -- accepting --------------------------------------------------------

    def check_capacity(self, needed: int = 0) -> None:
        """Raise ``OutboxFullError`` if ``needed`` more bytes would cross the free-disk threshold."""
        self.spool.check_free(needed)

    def accept_files(self, paths: Sequence[Path], destinations: dict[str, dict[str, Any]],
                     commitment: Iterable[str] = ()) -> dict[str, list[int]]:
        """Queue DICOM files for each destination (name -> spec); returns job ids per destination.

        ``commitment`` names the destinations that should confirm storage.
        Every file is checked first (nothing is queued if one is no DICOM
        file); then files are accepted in chunks, each durable when its journal
        transaction commits, so a running delivery starts on the first chunk.
        If the disk fills up, the chunks before stay queued and the error says so.
        """
        paths = [Path(p) for p in paths]
        metas = [read_header(p) for p in paths]
        commitment = set(commitment)
        jobs: dict[str, list[int]] = {name: [] for name in destinations}
        for start in range(0, len(paths), ACCEPT_CHUNK):
            chunk = paths[start:start + ACCEPT_CHUNK]
            try:
                self.check_capacity(sum(p.stat().st_size for p in chunk))
                entries = self.spool.put_files(chunk, spool_record(destinations, commitment))
                accepted = [Accepted(entry, meta.sop_instance_uid, meta.sop_class_uid, meta.transfer_syntax, str(path))
                            for entry, meta, path in zip(entries, metas[start:], chunk)]
                try:
                    added = self._journal(accepted, destinations, commitment)
                except BaseException:
                    for entry in entries:
                        self.spool.remove(entry.name)
                    raise
            except OutboxFullError as exc:
                if start:
                    exc.message += f"; the first {start} of {len(paths)} files were queued and will be delivered"
                raise
            for name, ids in added.items():
                jobs[name] += ids
        return jobs

    def accept_encoded(self, objects: Sequence["Encoded"], destinations: dict[str, dict[str, Any]],
                       commitment: Iterable[str] = ()) -> dict[str, list[int]]:
        """Queue Part 10 files already in memory (e.g. a medium's objects, reconciled) as one chunk:
        durable with one file-system sync and one journal transaction, all or none. Each must be a
        whole data set (``KioskError`` naming its ``original`` otherwise, before anything is written)."""
        commitment = set(commitment)
        for obj in objects:
            _check_encoded(obj)
        self.check_capacity(sum(len(obj.data) for obj in objects))
        base = spool_record(destinations, commitment)
        entries = self.spool.put_many([(obj.data, {**base, "original": obj.original}) for obj in objects])
        accepted = [Accepted(entry, obj.sop_instance_uid, obj.sop_class_uid, obj.transfer_syntax, obj.original)
                    for entry, obj in zip(entries, objects)]
        try:
            return self._journal(accepted, destinations, commitment)
        except BaseException:
            for entry in entries:
                self.spool.remove(entry.name)
            raise

    def accept_dataset(self, dataset: Any, destinations: dict[str, dict[str, Any]],
                       commitment: Iterable[str] = (), link: bool = False) -> dict[str, list[int]]:
        """Queue one pydicom Dataset, written as a Part 10 file with the kiosk's file meta. One whose
        pixel data is a file (a video object) is written straight into the spool, never into memory,
        and checked whole on disk before it is queued. With ``link`` (its clip is the kiosk's own file,
        which nothing changes any more: a session's), the clip is linked into the spool instead and the
        object written out before it is first sent (``kiosk.outbox.linked``)."""
        streamed = streamed_size(dataset)
        if streamed is not None:
            return self._accept_streamed(dataset, streamed, destinations, set(commitment), link)
        obj = encode(dataset)
        _check_encoded(obj)
        self.check_capacity(len(obj.data))
        entry = self.spool.put_bytes(obj.data, spool_record(destinations, set(commitment)))
        try:
            return self._journal([Accepted(entry, obj.sop_instance_uid, obj.sop_class_uid, obj.transfer_syntax)],
                                 destinations, set(commitment))
        except BaseException:
            self.spool.remove(entry.name)
            raise

    def _accept_streamed(self, dataset: Any, size: int, destinations: dict[str, dict[str, Any]],
                         commitment: set[str], link: bool) -> dict[str, list[int]]:
        set_file_meta(dataset)
        uid, sop_class, syntax = (str(dataset.SOPInstanceUID), str(dataset.SOPClassUID),
                                  str(dataset.file_meta.TransferSyntaxUID))

        self.check_capacity(size + STREAMED_HEADER)
        record = spool_record(destinations, commitment)
        entry = accept_linked(self.spool, dataset, record) if link else None
        if entry is None:
            entry = self.spool.put_written(lambda out, digest: save(dataset, out, digest), record,
                                           lambda path: check_written(path, syntax, uid))
        try:
            return self._journal([Accepted(entry, uid, sop_class, syntax)], destinations, commitment)
        except BaseException:
            self.spool.remove(entry.name)
            raise

    def _journal(self, entries: list[Accepted], destinations: dict[str, dict[str, Any]], commitment: set[str]) -> dict[str, list[int]]:
        try:
            jobs = self.journal.add(entries, destinations, commitment)
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise OutboxFullError("the outbox disk is full; the images were refused and nothing already accepted is lost",
                                      f"free space on the disk holding {self.settings.spool_dir}") from None
            raise SpoolError(f"the outbox journal cannot be written: {exc}", "check the disk holding the outbox") from None
        for name, ids in jobs.items():
            if ids:
                self.events.publish(ev.JobsAdded(name, tuple(ids)))
        return jobs

    def prepare(self, job: Job) -> Job:
        """``job`` with its object written out in the spool if it was queued linked (``kiosk.outbox.linked``):
        what sending or exporting it needs first. A ``KioskError`` says why it cannot be."""
        if not job.preparing:
            return job
        entry = prepare(self.spool, job.spool_name)
        self.journal.prepared(job.instance_id, entry.sha256, entry.size)
        return replace(job, sha256=entry.sha256, size=entry.size)

    # -- jobs -------------------------------------------------------------

    def job(self, job_id: int) -> Job:
        found = self.journal.get(job_id)
        if found is None:
            raise UsageError(f"there is no job {job_id} in the outbox", "see 'kiosk outbox list' for job numbers")
        return found

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts per state per destination."""
        return self.journal.summary()

    def claim(self, destination: str, limit: int) -> list[Job]:
        """Take up to ``limit`` due jobs of ``destination`` for sending (state ``sending``)."""
        jobs, previous = self.journal.claim(destination, limit)
        for job in jobs:
            self.events.publish(ev.StateChanged(job.id, destination, previous[job.id], job.state))
        return jobs

    def apply(self, updates: Iterable[Update]) -> None:
        """Record state changes and publish them."""
        for before, change in self.journal.update(updates):
            if before.state != change.state:
                self.events.publish(ev.StateChanged(before.id, before.destination, before.state, change.state,
                                                    change.status, change.reason))

    def retry(self, job_ids: Sequence[int]) -> int:
        """Queue jobs again now, with a fresh retry count; returns how many."""
        for job_id in job_ids:
            job = self.job(job_id)
            if job.state == "sending":
                raise UsageError(f"job {job_id} is being sent right now", "wait for it to finish")
        self.apply(Update(job_id, "queued", attempts=0) for job_id in job_ids)
        return len(job_ids)

    def retry_failed(self) -> int:
        return self.retry([job.id for job in self.journal.jobs(state=FAILED)])

    def remove(self, job_ids: Sequence[int], force: bool = False) -> int:
        """Delete jobs (and spool files no other job needs); unsent jobs only with ``force``."""
        for job_id in job_ids:
            job = self.job(job_id)
            if job.state in ("queued", "sending", "retrying") and not force:
                raise UsageError(f"job {job_id} is {job.state}: removing it means the image is never delivered",
                                 "add --force if that is what you want")
        for name in self.journal.remove(job_ids):
            self.spool.remove(name)
        return len(job_ids)

    # -- delivery lock ----------------------------------------------------

    def try_lock_delivery(self) -> int | None:
        """Take the spool's delivery lock; returns its file descriptor, or None if another process has it."""
        return lock_delivery(self.settings.spool_dir)

    @staticmethod
    def unlock_delivery(fd: int) -> None:
        os.close(fd)

    def delivery_running(self) -> bool:
        """Whether some process (``kiosk outbox run``) is delivering from this spool."""
        fd = self.try_lock_delivery()
        if fd is None:
            return True
        self.unlock_delivery(fd)
        return False


def lock_delivery(spool_dir: Path) -> int | None:
    """Take the delivery lock of the spool in ``spool_dir``: its file descriptor, or None if another process has it."""
    return try_lock(spool_dir / LOCK_NAME)


def spool_record(destinations: dict[str, dict[str, Any]], commitment: set[str]) -> dict[str, Any]:
    """What each spool file's record keeps so that its jobs can be rebuilt without the journal."""
    return {"destinations": destinations, "commitment": sorted(commitment & destinations.keys()), "accepted": time.time()}


def read_header(path: Path) -> FileMeta:
    """What a file's meta information says, once its data set is known to be whole; else a ``KioskError`` naming the file."""
    try:
        meta = read_meta(path)
        check_complete(path, meta.transfer_syntax)
    except NotPart10Error as exc:
        raise KioskError(f"{path}: {exc.message}", exc.hint or "send complete DICOM Part 10 files only") from None
    return meta


@dataclass(frozen=True)
class Encoded:
    """One Part 10 file in memory, for ``Outbox.accept_encoded``; ``original``: where it came from."""

    data: bytes
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    original: str = ""


def encode(dataset: Any, original: str = "") -> Encoded:
    """``dataset`` as a Part 10 file with the kiosk's file meta (``kiosk.part10.set_file_meta``)."""
    from io import BytesIO

    set_file_meta(dataset)
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return Encoded(buffer.getvalue(), str(dataset.SOPInstanceUID), str(dataset.SOPClassUID),
                   str(dataset.file_meta.TransferSyntaxUID), original)


def _check_encoded(obj: Encoded) -> None:
    try:
        check_complete(obj.data, obj.transfer_syntax)
    except NotPart10Error as exc:
        raise KioskError(f"{obj.original or 'image ' + obj.sop_instance_uid}: {exc.message}", exc.hint) from None
