"""Chosen studies of a medium -> reconciled objects queued in the outbox (IHE RAD IRWF.b Importer).

``import_media`` takes the series the operator chose and the local patient (a worklist item: a
scheduled import; a PACS patient or the form: unscheduled) and, instance by instance:

1. leaves out what the archive already holds, with ``[media] skip_existing`` and a ``[query]``
   node (one IMAGE level C-FIND per series, by the UIDs the objects get; a node that does not
   answer is a warning and everything is imported); the reader has already left out what the
   medium holds twice and what it cannot use (``Medium.problems``);
2. reads each file whole (the medium is only ever read), checks it is whole, reconciles it (``kiosk.media.reconcile``)
   and queues it through the station, in chunks: each chunk is durable with one file-system sync
   and one journal transaction, so a running delivery starts on the first one and a failure never
   leaves a chunk half-queued;
3. records one Import audit event (110107) with the studies as they now are.

A file that cannot be read or is no DICOM becomes a ``MediaProblem`` and the rest goes on; a medium
that goes away (its root unreachable) stops the import: what was read is queued, the rest is counted
in ``ImportResult.not_read`` and ``stopped`` says what happened. No MPPS is sent for an import.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, Callable, Iterable

from kiosk.audit import events, trail
from kiosk.audit.codes import Outcome
from kiosk.config import Config
from kiosk.dataset_check import check_complete
from kiosk.endian import EXPLICIT_BE, to_little_endian
from kiosk.errors import KioskError
from kiosk.media.model import MediaInstance, MediaPatient, MediaProblem, MediaSeries, MediaStudy, Medium
from kiosk.media.reconcile import UidMap, reconcile
from kiosk.outbox.core import Encoded, encode
from kiosk.part10 import NotPart10Error
from kiosk.station import OutboxOutput, Station
from kiosk.study import StudyContext

log = logging.getLogger(__name__)

CHUNK_FILES = 50  # objects per durable chunk
CHUNK_BYTES = 32 << 20  # ... or fewer, once they hold this much

Chosen = tuple[MediaPatient, MediaStudy, MediaSeries]


@dataclass
class ImportResult:
    """What became of the chosen instances.

    ``skipped``: left out on purpose, with why (on the archive already).
    ``failed``: files that could not be imported, each with the reason. ``warnings``: things the
    operator should know that did not stop anything (the query node did not answer). ``stopped``:
    why the import ended early (the medium was removed, cancelled), ``not_read`` instances untouched.
    """

    queued: int = 0
    skipped: list[tuple[MediaInstance, str]] = field(default_factory=list)
    failed: list[MediaProblem] = field(default_factory=list)
    jobs: dict[str, list[int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stopped: str = ""
    not_read: int = 0
    studies: dict[str, dict[str, int]] = field(default_factory=dict)  # study UID -> SOP class -> count


class MediumGone(Exception):
    """The medium's root cannot be reached any more (ejected, unplugged)."""


def import_media(config: Config, medium: Medium, chosen: list[Chosen], context: StudyContext,
                 destinations: dict[str, dict], *, scheduled: bool,
                 progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None,
                 commitment: Iterable[str] = (), station: Station | None = None,
                 outbox: Any = None) -> ImportResult:
    """Import the ``chosen`` series of ``medium`` under ``context`` into the outbox for ``destinations``.

    ``progress(done, total)`` after each instance; ``cancel`` stops before the next one (what was read
    is queued). ``station``/``outbox``: the caller's, to follow delivery (``kiosk import --wait``);
    by default an outbox from the configuration and a station of its own, finished at the end.
    """
    from kiosk.outbox import Outbox

    own_outbox = outbox is None
    outbox = outbox or Outbox.from_config(config)
    own_station = station is None
    station = station or Station()
    try:
        return _Import(config, medium, context, scheduled, station, OutboxOutput(outbox, destinations, commitment),
                       progress, cancel).run(chosen)
    finally:
        if own_station:
            station.finish()
        if own_outbox:
            outbox.close()


class _Import:
    def __init__(self, config: Config, medium: Medium, context: StudyContext, scheduled: bool, station: Station,
                 output: OutboxOutput, progress: Callable[[int, int], None] | None,
                 cancel: threading.Event | None) -> None:
        self.config, self.medium, self.context, self.scheduled = config, medium, context, scheduled
        self.station, self.output, self.progress, self.cancel = station, output, progress, cancel
        self.uid_map = UidMap.for_patient(context, config.local.uid_root) if config.media.remap_uids else None
        self.when = dt.datetime.now().astimezone()
        self.result = ImportResult()
        self.chunk: list[Encoded] = []
        self.chunk_bytes = 0

    def run(self, chosen: list[Chosen]) -> ImportResult:
        result = self.result
        todo = [(series, inst) for _, _, series in chosen for inst in series.instances]
        studies = {series.uid: study.uid for _, study, series in chosen}
        total, done = len(todo), 0
        todo = self._without_existing(todo, studies)
        done = total - len(todo)
        self._progress(done, total)
        try:
            for index, (series, inst) in enumerate(todo):
                if self.cancel is not None and self.cancel.is_set():
                    result.stopped = "cancelled"
                    result.not_read = len(todo) - index
                    break
                try:
                    self._one(inst)
                except MediumGone:
                    result.stopped = (f"the medium {self.medium.root} was removed after {done} of {total} "
                                      "instance(s)")
                    result.not_read = len(todo) - index
                    break
                done += 1
                self._progress(done, total)
        finally:
            self._flush()  # what was read whole goes, even when the medium went or the disk filled up
            self._audit()
        log.info("import from %s: %d queued, %d skipped, %d failed, %d not read", self.medium.root,
                 result.queued, len(result.skipped), len(result.failed), result.not_read)
        return result

    def _progress(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)

    # -- what is left out ------------------------------------------------------------------
    def _without_existing(self, todo: list[tuple[MediaSeries, MediaInstance]],
                          studies: dict[str, str]) -> list[tuple[MediaSeries, MediaInstance]]:
        """Without what the [query] node already holds (asked per series, by the UIDs the objects get)."""
        node = self.config.query
        if node is None or not self.config.media.skip_existing or not todo:
            return todo
        from kiosk.net.query import instance_uids

        held: set[str] = set()
        for series_uid in dict.fromkeys(series.uid for series, _ in todo):
            study_uid = studies[series_uid]
            if self.uid_map is not None:
                study_uid, series_uid = self.uid_map(study_uid), self.uid_map(series_uid)
            try:
                held |= instance_uids(node, self.config.local, study_uid, series_uid, cancel=self.cancel)
            except KioskError as exc:
                self.result.warnings.append(f"could not ask {node} which instances it already holds ({exc.message}); "
                                            "importing every chosen instance")
                return todo
        kept = []
        for series, inst in todo:
            if inst.sop_instance_uid in held:
                self.result.skipped.append((inst, f"already on the archive ({node})"))
            else:
                kept.append((series, inst))
        return kept

    # -- reading, reconciling, queueing --------------------------------------------------------
    def _one(self, inst: MediaInstance) -> None:
        from pydicom import dcmread
        from pydicom.errors import InvalidDicomError

        try:
            with open(inst.path, "rb") as handle:  # read only, whole: the file is checked before it is parsed
                data = handle.read()
        except OSError as exc:
            if self._gone():
                raise MediumGone() from None
            self.result.failed.append(MediaProblem(inst.path, f"cannot be read ({exc.strerror or exc})"))
            return
        try:
            # pydicom reads a file cut short in its pixel data without a word, and would write it shorter.
            check_complete(data, inst.transfer_syntax)
        except NotPart10Error as exc:
            self.result.failed.append(MediaProblem(inst.path, f"is no readable DICOM file ({exc.message})"))
            return
        try:
            ds = dcmread(BytesIO(data))
        except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError) as exc:
            self.result.failed.append(MediaProblem(inst.path, f"is no readable DICOM file ({_short(exc)})"))
            return
        try:
            if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
                raise ValueError("it has no SOP Class or SOP Instance UID")
            if inst.transfer_syntax == EXPLICIT_BE:
                to_little_endian(ds)  # retired, and few archives take it
            reconcile(ds, self.context, scheduled=self.scheduled, uid_map=self.uid_map, when=self.when)
            obj = encode(ds, str(inst.path))
        except Exception as exc:  # noqa: BLE001 - a damaged object (a value pydicom cannot read or write)
            self.result.failed.append(MediaProblem(inst.path, f"cannot be imported ({_short(exc)})"))
            return
        study_uid = str(ds.get("StudyInstanceUID", ""))
        classes = self.result.studies.setdefault(study_uid, {})
        classes[obj.sop_class_uid] = classes.get(obj.sop_class_uid, 0) + 1
        self.chunk.append(obj)
        self.chunk_bytes += len(obj.data)
        if len(self.chunk) >= CHUNK_FILES or self.chunk_bytes >= CHUNK_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self.chunk:
            return
        chunk, self.chunk, self.chunk_bytes = self.chunk, [], 0
        jobs = self.station.queue_encoded(chunk, self.output)
        for name, ids in jobs.items():
            self.result.jobs.setdefault(name, []).extend(ids)
        self.result.queued += len(chunk)

    def _gone(self) -> bool:
        """Whether the medium's root is unreachable (the medium removed), not only one file."""
        try:
            os.stat(self.medium.root)
            os.listdir(self.medium.root)
        except OSError:
            return True
        return False

    def _audit(self) -> None:
        """Import (110107): the studies queued, under the local patient, from the medium."""
        result = self.result
        try:
            studies = [events.Study(uid, self.context.patient_id, self.context.patient_name, tuple(classes.items()),
                                    self.context.accession if self.scheduled else "")
                       for uid, classes in result.studies.items()]
            if not studies:
                return
            trouble = result.failed or result.stopped
            outcome = Outcome.SUCCESS if not trouble else Outcome.MINOR_FAILURE
            trail.record(events.import_(trail.application(), self.medium.label or str(self.medium.root), studies,
                                        trail.operator(), outcome))
        except Exception as exc:  # noqa: BLE001 - auditing must not stop the import
            log.error("audit: the import from %s could not be described (%s)", self.medium.root, type(exc).__name__)


def _short(exc: BaseException) -> str:
    """An exception's message on one line (no patient data: pydicom names tags and lengths)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
