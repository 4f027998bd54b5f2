"""The station: one capture session's whole life, on the same route for the touch UI and the CLI.

States and the events each step publishes (``Station.subscribe``; every
station's events also reach ``observe``, where MPPS, audit and the like attach):

=============  ==============================================  ==================
state          step                                            event
=============  ==============================================  ==================
``open``       ``start`` / ``resume`` / ``stream``             ``context_chosen``
``open``       ``add``, ``add_clip``, ``add_pages``            ``capture_added``
(any)          each object is built, then written and/or       ``object_built``,
               queued before the next one is built             ``queued``
``delivering`` every object is queued (``send``; ``finish`` of  ``delivering``
               a streaming station)
``delivering`` the outbox reports on the station's jobs        ``delivery_status``
``finished``   ``finish``                                      ``finished``
``abandoned``  ``abandon``: ended without sending              ``abandoned``
=============  ==============================================  ==================

A station holds its captures one of two ways:

* persisted (the touch UI): a ``kiosk.session.Session`` keeps every capture on
  disk until ``send`` builds the objects and hands them to the outputs; then
  the session's own copies go;
* streaming (``kiosk acquire``, ``kiosk convert``): no session; each capture is
  built and handed to the outputs as it is added.

Either way one object exists at a time, so memory does not grow with the size
of a session. Outputs are an output folder (``FolderOutput``) and the outbox
(``OutboxOutput``); ``kiosk send`` queues finished files with ``queue_files``, the media importer
reconciled objects with ``queue_encoded``.
Events are published in the thread doing the work: the UI hands them to its
own thread. ``BackgroundDelivery`` is the delivery loop a process runs for
itself (the touch UI, ``kiosk send --wait``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

from kiosk import barcodes
from kiosk.barcodes import BarcodeMismatch, Verdict
from kiosk.capture import Capture
from kiosk.errors import KioskError
from kiosk.outbox.events import EventBus

if TYPE_CHECKING:
    from kiosk.config import BarcodesConfig
    from kiosk.dicomize import Batch, BuildOptions
    from kiosk.outbox import Outbox
    from kiosk.session import Session, SessionStore

log = logging.getLogger(__name__)

OPEN, DELIVERING, FINISHED, ABANDONED = "open", "delivering", "finished", "abandoned"


# -- events -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StationEvent:
    """Something happened to ``station``; ``name`` says what (the lifecycle step)."""

    name: ClassVar[str] = ""
    station: "Station" = field(repr=False, compare=False)


@dataclass(frozen=True)
class ContextChosen(StationEvent):
    name: ClassVar[str] = "context_chosen"
    study: Any = None  # the StudyContext


@dataclass(frozen=True)
class CaptureAdded(StationEvent):
    name: ClassVar[str] = "capture_added"
    capture: Capture | None = None  # the capture, or the first frame of a clip
    frames: int = 1


@dataclass(frozen=True)
class ObjectBuilt(StationEvent):
    """``dataset`` is valid during the callback only: keeping it would defeat one-object-at-a-time."""

    name: ClassVar[str] = "object_built"
    dataset: Any = None


@dataclass(frozen=True)
class Queued(StationEvent):
    """Objects left the station: outbox ``jobs`` per destination, and/or the file written at ``path``.
    ``sop_instance_uid`` is "" for files queued as they are (``queue_files``)."""

    name: ClassVar[str] = "queued"
    jobs: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    path: Path | None = None
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    transfer_syntax: str = ""


@dataclass(frozen=True)
class DeliveryStatus(StationEvent):
    """An outbox event (``kiosk.outbox.events``) about one of the station's jobs or destinations."""

    name: ClassVar[str] = "delivery_status"
    event: Any = None


@dataclass(frozen=True)
class Delivering(StationEvent):
    """Every object of the session is built and handed to the outputs (accepted by the outbox)."""

    name: ClassVar[str] = "delivering"
    objects: int = 0


@dataclass(frozen=True)
class Finished(StationEvent):
    name: ClassVar[str] = "finished"
    objects: int = 0


@dataclass(frozen=True)
class Abandoned(StationEvent):
    """Ended without sending; a persisted session keeps its ``captures`` for resume (none: it is gone)."""

    name: ClassVar[str] = "abandoned"
    captures: int = 0


_OBSERVERS = EventBus()


def observe(callback: Callable[[StationEvent], None]) -> Callable[[], None]:
    """Receive the events of every station in this process; returns the function that stops it."""
    return _OBSERVERS.subscribe(callback)


class StationClosed(KioskError):
    """A step the station's state does not allow (e.g. adding to a session already sent)."""


# -- outputs ------------------------------------------------------------------------------------
class FolderOutput:
    """Write each object as a Part 10 file into ``folder``, named by ``name_of(dataset)``."""

    def __init__(self, folder: Path, durable: bool = True,
                 name_of: Callable[[Any], Path] | None = None) -> None:
        self.folder = Path(folder)
        self.durable = durable
        self.name_of = name_of or (lambda ds: self.folder / f"{ds.SOPInstanceUID}.dcm")
        self.files: list[Path] = []

    def put(self, dataset: Any) -> Path:
        from kiosk.dicomize import write_dataset

        path = write_dataset(dataset, self.name_of(dataset), durable=self.durable)
        self.files.append(path)
        return path


class OutboxOutput:
    """Queue each object durably in ``outbox`` for ``destinations`` (name -> spec). ``link_clips``: the clips
    are the kiosk's own files, which nothing changes any more (a session's): linked into the outbox,
    not copied (``Outbox.accept_dataset``)."""

    def __init__(self, outbox: "Outbox", destinations: dict[str, dict[str, Any]], commitment: Iterable[str] = (),
                 link_clips: bool = False) -> None:
        self.outbox = outbox
        self.destinations = destinations
        self.commitment = set(commitment)
        self.link_clips = link_clips

    def put(self, dataset: Any) -> dict[str, list[int]]:
        return self.outbox.accept_dataset(dataset, self.destinations, self.commitment, self.link_clips)

    def put_files(self, files: Sequence[Path]) -> dict[str, list[int]]:
        return self.outbox.accept_files(files, self.destinations, self.commitment)

    def put_encoded(self, objects: Sequence[Any]) -> dict[str, list[int]]:
        """Queue Part 10 files in memory (``kiosk.outbox.core.Encoded``) as one durable chunk."""
        return self.outbox.accept_encoded(objects, self.destinations, self.commitment)


# -- the station --------------------------------------------------------------------------------
class Station:
    """One capture session: study context, captures, objects, queueing, delivery status, end."""

    def __init__(self, options: "BuildOptions | None" = None, barcodes: "BarcodesConfig | None" = None) -> None:
        """An empty station; ``start``, ``resume`` or ``stream`` choose the study context.
        ``barcodes``: the ``[barcodes]`` rules each page is checked against as it is added."""
        self.options = options
        self.barcodes = barcodes
        self.ignore_barcode_mismatch = False  # streaming: pages of another patient go through (audited)
        self.session: Session | None = None
        self.study: Any = None
        self.state = OPEN
        self.outputs: list[Any] = []
        self.jobs: dict[str, list[int]] = {}
        self._job_ids: dict[str, set[int]] = {}  # the same ids, for the relay's per-event lookup
        self.objects = 0  # built and handed to the outputs
        self._batch: Batch | None = None
        self._step: Any = None  # the PerformedStep, once the first capture is taken
        self._bus = EventBus()
        self._lock = threading.RLock()  # the UI adds captures from worker threads
        self._following: list[Callable[[], None]] = []

    # -- beginning ---------------------------------------------------------------------------
    @classmethod
    def start(cls, store: "SessionStore", context: Any, options: "BuildOptions | None" = None,
              subscribers: Iterable[Callable[[StationEvent], None]] = (),
              barcodes: "BarcodesConfig | None" = None) -> "Station":
        """A persisted station: a new session in ``store`` for ``context`` (a StudyContext)."""
        station = cls(options, barcodes)
        for callback in subscribers:
            station.subscribe(callback)
        station.session = store.start(context)
        station._chosen(context)
        return station

    @classmethod
    def resume(cls, session: "Session", options: "BuildOptions | None" = None,
               subscribers: Iterable[Callable[[StationEvent], None]] = (),
               barcodes: "BarcodesConfig | None" = None) -> "Station":
        """A persisted station for a kept session, open again."""
        station = cls(options, barcodes)
        for callback in subscribers:
            station.subscribe(callback)
        session.resume()
        station.session = session
        station._chosen(session.context)
        return station

    @classmethod
    def stream(cls, study: Any, options: "BuildOptions", outputs: Sequence[Any],
               subscribers: Iterable[Callable[[StationEvent], None]] = (),
               barcodes: "BarcodesConfig | None" = None, ignore_barcode_mismatch: bool = False) -> "Station":
        """A streaming station: each capture added is built and handed to ``outputs`` at once.
        Bad options or study context raise here, before any capture. A page whose barcode names
        another patient raises ``BarcodeMismatch`` unless ``ignore_barcode_mismatch``; a separator
        sheet starts new series and is not built."""
        from kiosk.dicomize import Batch

        station = cls(options, barcodes)
        station.ignore_barcode_mismatch = ignore_barcode_mismatch
        for callback in subscribers:
            station.subscribe(callback)
        station.outputs = list(outputs)
        station.study = study
        step = station.performed_step(options.uid_root)
        station._batch = Batch(study, dataclasses.replace(options, step=step))
        station._chosen(study)
        return station

    @property
    def streaming(self) -> bool:
        """Each capture is built and handed over as it is added (``stream``)."""
        return self.session is None and self._batch is not None

    def performed_step(self, uid_root: str = "") -> Any:
        """The performed procedure step this session is (a ``PerformedStep``), begun now if not yet:
        at the first capture, or when a streaming station starts. Its objects and its MPPS share it."""
        from kiosk.dicomize import PerformedStep

        with self._lock:
            if self._step is None:
                self._step = PerformedStep.new(self.study, uid_root)
            return self._step

    def _chosen(self, study: Any) -> None:
        self.study = study
        self._publish(ContextChosen(self, study))

    # -- events ------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[StationEvent], None], *names: str) -> Callable[[], None]:
        """Call ``callback(event)`` for this station's events (only those ``names`` if given)."""
        if not names:
            return self._bus.subscribe(callback)
        wanted = set(names)
        unknown = wanted - {c.name for c in StationEvent.__subclasses__()}
        if unknown:
            raise ValueError(f"no station event {', '.join(sorted(unknown))}")

        def filtered(event: StationEvent) -> None:
            if event.name in wanted:
                callback(event)

        return self._bus.subscribe(filtered)

    def _publish(self, event: StationEvent) -> None:
        self._bus.publish(event)
        _OBSERVERS.publish(event)

    # -- captures ----------------------------------------------------------------------------
    def add(self, capture: Capture) -> None:
        """One capture (a page, a photo, a frame): kept in the session, or built at once when streaming.
        With ``[barcodes]`` rules its barcodes are read first, in the calling thread (the UI's worker):
        the verdict travels in its metadata (``kiosk.barcodes``)."""
        if capture.is_clip:  # e.g. ``kiosk acquire file:clip.mp4``
            self.add_clip(capture)
            return
        if self.session is not None:
            capture = self._checked(capture)
        self._add([capture], lambda: self.session.add(capture), multiframe=None)

    def add_clip(self, clip: Capture) -> None:
        """A video clip (``Capture.is_clip``, its file on disk): one video object, or several
        consecutive ones when it is too large for one. A persisted session takes the file in."""
        if not clip.is_clip:
            raise ValueError("add_clip takes a video clip capture")
        self._add([clip], lambda: self.session.add_clip(clip), multiframe=None)

    def add_pages(self, captures: Sequence[Capture]) -> None:
        """The pages of one document or file: one object each, or per run of same-sized pages with
        ``options.multiframe``. A streaming station builds them before it returns."""
        for capture in captures if self.session is not None else ():
            self.add(capture)
        if self.session is None:
            self._add(captures, None, multiframe=None)

    def _add(self, captures: Sequence[Capture], persist: Callable[[], Any] | None, multiframe: bool | None) -> None:
        with self._lock:
            if self.state != OPEN or self.study is None:
                raise self._closed("no more images can be added to it")
            if self.session is not None:
                persist()
                self._publish(CaptureAdded(self, captures[0], _frames(captures, multiframe)))
                return
            if multiframe is None:
                captures = self._guarded([self._checked(c) for c in captures])
            for capture in captures if multiframe is None else captures[:1]:
                if not Verdict.of(capture).separator:
                    self._publish(CaptureAdded(self, capture, _frames([capture] if multiframe is None else captures,
                                                                      multiframe)))
            for number, document in enumerate(_documents(captures)):
                if number:  # after a separator sheet
                    self._batch.new_document()
                for group in self._batch.plan(document, multiframe):
                    for ds in self._batch.objects(group):
                        self._hand_over(ds)

    # -- barcodes ------------------------------------------------------------------------------
    def _checked(self, capture: Capture) -> Capture:
        """The capture with its barcode verdict (nothing read without rules, a study, or on a clip)."""
        if self.study is None or capture.is_clip or not barcodes.active(self.barcodes):
            return capture
        return barcodes.check(capture, self.study, self.barcodes)

    def _guarded(self, captures: list[Capture]) -> list[Capture]:
        """Streaming: refuse pages of another patient or order (none of them is built), unless told to
        let them through, which is audited."""
        pages = [(c.index + 1, v.mismatch) for c in captures if (v := Verdict.of(c)).mismatch is not None]
        if pages and not self.ignore_barcode_mismatch:
            raise BarcodeMismatch(pages)
        if pages:
            _audit_override(len(pages), "--ignore-barcode-mismatch")
        return captures

    def flagged(self) -> list[tuple[int, Any]]:
        """The persisted session's pages (0-based positions) whose barcode names another patient or
        order: ``send`` refuses them unless ``allow_mismatch``."""
        return barcodes.flagged(self.session.captures) if self.session is not None else []

    def count_objects(self, captures: Sequence[Capture]) -> int:
        """How many objects ``add_pages(captures)`` (or ``add_clip``) makes (nothing is built; a long
        clip's parts are found from its file)."""
        from kiosk.video.elementary import segments

        return sum(len(segments(group[0].encoded_path, self._batch.options.max_object_bytes, group[0].video))
                   if group[0].is_clip else 1 for group in self._batch.plan(captures))

    def _closed(self, consequence: str) -> StationClosed:
        why = {OPEN: "has no patient or study chosen", DELIVERING: "is already in the outbox"}.get(self.state, "has ended")
        return StationClosed(f"this session {why}: {consequence}", "start a new session for more images")

    def _hand_over(self, dataset: Any) -> None:
        """Give one object to every output, then forget it."""
        self._publish(ObjectBuilt(self, dataset))
        path, jobs = None, {}
        for output in self.outputs:
            where = output.put(dataset)
            if isinstance(where, Path):
                path = where
            else:
                jobs = {name: tuple(ids) for name, ids in where.items()}
                self._note_jobs(output, jobs)
        self.objects += 1
        self._publish(Queued(self, jobs, path, str(dataset.SOPClassUID), str(dataset.SOPInstanceUID),
                             str(dataset.file_meta.TransferSyntaxUID)))

    def _note_jobs(self, output: Any, jobs: Mapping[str, tuple[int, ...]]) -> None:
        if self.state == OPEN and isinstance(output, OutboxOutput) and not self._following:
            self._follow(output.outbox)
        for name, ids in jobs.items():
            self.jobs.setdefault(name, []).extend(ids)
            self._job_ids.setdefault(name, set()).update(ids)

    # -- objects out ---------------------------------------------------------------------------
    def send(self, outputs: Sequence[Any], options: "BuildOptions | None" = None,
             allow_mismatch: bool = False) -> None:
        """Build the persisted session's objects one at a time and hand each to ``outputs``; then the
        session's own copies go (the outputs hold the objects) and the station is ``delivering``.
        ``options`` (default: the station's) are taken here, in the sending thread: the touch UI
        starts a station on its own thread, where importing the dicomizer (pydicom) would stall
        drawing and can race a worker thread's first pydicom import.
        On a failure the session keeps every capture (objects already queued stay queued).
        Pages whose barcode names another patient or order raise ``BarcodeMismatch`` before anything
        is built, unless ``allow_mismatch`` (the operator confirmed with the admin PIN; audited).
        Separator sheets start new series and are not sent."""
        from kiosk.dicomize import Batch, BuildOptions

        with self._lock:
            session = self.session
            if session is None or self.state != OPEN:
                raise self._closed("there is nothing more to send")
            pages = [(position + 1, mismatch) for position, mismatch in self.flagged()]
            if pages and not allow_mismatch:
                raise BarcodeMismatch(pages)
            if pages:
                _audit_override(len(pages), "confirmed with the admin PIN")
            base = options or self.options or BuildOptions()
            options = dataclasses.replace(base, series_description=session.series_description or base.series_description,
                                          multiframe=session.multiframe, step=self.performed_step(base.uid_root))
            self.outputs = list(outputs)
            self._batch = batch = Batch(session.context, options)
            pending: list[Capture] = []
            for item in list(session.items):
                if Verdict.of(item.capture).separator:
                    for group in batch.plan(pending):
                        for ds in batch.objects(group):
                            self._hand_over(ds)
                    pending = []
                    batch.new_document()
                    continue
                pending.append(item.capture)  # a clip is a group of its own in ``plan``
            for group in batch.plan(pending):
                for ds in batch.objects(group):
                    self._hand_over(ds)
            log.info("built and queued %d object(s) of %s", self.objects, session.label())
            session.finish()
            self.state = DELIVERING
        self._publish(Delivering(self, self.objects))

    def queue_files(self, files: Sequence[Path], output: OutboxOutput,
                    accept: Callable[[Sequence[Path]], dict[str, list[int]]] | None = None) -> dict[str, list[int]]:
        """Queue finished DICOM files as they are (``kiosk send``); ``accept`` replaces
        ``output.put_files`` (e.g. accepting in a helper process). Returns job ids per destination."""
        with self._lock:
            jobs = (accept or output.put_files)(files)
            self._note_jobs(output, {name: tuple(ids) for name, ids in jobs.items()})
            self.objects += len(files)
            self.state = DELIVERING
            self._publish(Queued(self, {name: tuple(ids) for name, ids in jobs.items()}))
            return jobs

    def queue_encoded(self, objects: Sequence[Any], output: OutboxOutput) -> dict[str, list[int]]:
        """Queue finished objects held in memory (``kiosk.outbox.core.Encoded``: a medium's objects
        reconciled by the importer) as one chunk; call it once per chunk. Returns job ids per destination."""
        with self._lock:
            jobs = output.put_encoded(objects)
            self._note_jobs(output, {name: tuple(ids) for name, ids in jobs.items()})
            self.objects += len(objects)
            self.state = DELIVERING
            self._publish(Queued(self, {name: tuple(ids) for name, ids in jobs.items()}))
            return jobs

    def _follow(self, outbox: "Outbox") -> None:
        """Pass on the outbox's events about this station's jobs as ``delivery_status``."""
        from kiosk.outbox import events as ev

        def relay(event: Any) -> None:
            if isinstance(event, ev.StateChanged):
                ours = event.job_id in self._job_ids.get(event.destination, ())
            else:
                ours = isinstance(event, (ev.Progress, ev.DestinationStatus)) and event.destination in self.jobs
            if ours:
                self._publish(DeliveryStatus(self, event))

        self._following.append(outbox.events.subscribe(relay))

    # -- ending --------------------------------------------------------------------------------
    @property
    def captures(self) -> int:
        return len(self.session) if self.session is not None else 0

    def finish(self) -> None:
        """The session is over, its objects written or queued (delivery goes on in the outbox)."""
        with self._lock:
            if self.state in (FINISHED, ABANDONED):
                return
            if self.session is not None and self.state == OPEN:
                if len(self.session):
                    raise StationClosed("this session still holds unsent images",
                                        "send them, or end the session keeping them for later")
                self.session.discard()
            streamed = self.streaming  # its objects went out as they came
            self.state = FINISHED
            self._stop_following()
        if streamed:
            self._publish(Delivering(self, self.objects))
        self._publish(Finished(self, self.objects))

    def abandon(self) -> None:
        """End without sending: a persisted session keeps its captures (an empty one is removed)."""
        with self._lock:
            if self.state in (FINISHED, ABANDONED):
                return
            captures = self.captures
            if self.session is not None:
                self.session.abandon()
            self.state = ABANDONED
            self._stop_following()
        self._publish(Abandoned(self, captures))

    def end(self) -> None:
        """The operator ends the session: ``finish`` once sent (or empty), else ``abandon``."""
        if self.state == OPEN and self.captures:
            self.abandon()
        else:
            self.finish()

    def _stop_following(self) -> None:
        for unsubscribe in self._following:
            unsubscribe()
        self._following.clear()


def _frames(captures: Sequence[Capture], multiframe: bool | None) -> int:
    """The frames one added item has: a clip's, a multi-frame group's, else 1."""
    if captures[0].is_clip:
        return captures[0].video.frames
    return len(captures) if multiframe else 1


def _documents(captures: Sequence[Capture]) -> Iterator[list[Capture]]:
    """The runs of pages between separator sheets (the sheets left out; empty runs too)."""
    run: list[Capture] = []
    for capture in captures:
        if Verdict.of(capture).separator:
            yield run
            run = []
        else:
            run.append(capture)
    yield run


def _audit_override(pages: int, how: str) -> None:
    from kiosk.audit import trail

    trail.barcode_override(pages, how)


class BackgroundDelivery:
    """An outbox's delivery loop in a thread of this process, holding the spool's delivery lock."""

    def __init__(self, outbox: "Outbox", config: Any, lock: int, poll: float,
                 prepare: Callable[[], None] | None = None) -> None:
        from kiosk.outbox.worker import Delivery

        self.outbox, self.lock, self.prepare = outbox, lock, prepare
        self.delivery = Delivery(outbox, config, poll=poll)
        self.thread = threading.Thread(target=self._run, name="kiosk-delivery", daemon=True)

    @classmethod
    def claim(cls, outbox: "Outbox", config: Any, poll: float = 1.0,
              prepare: Callable[[], None] | None = None) -> "BackgroundDelivery | None":
        """A delivery loop for this process (not started), or None if another process delivers.
        ``prepare`` runs first in the delivery thread (e.g. to lower its priority)."""
        lock = outbox.try_lock_delivery()
        return None if lock is None else cls(outbox, config, lock, poll, prepare)

    def _run(self) -> None:
        if self.prepare is not None:
            self.prepare()
        self.delivery.run()

    def start(self) -> None:
        from kiosk.outbox.destinations import preload

        # Imported before the thread starts: pydicom imported by two threads at once fails
        # ("partially initialized module"), and accepting a file may need pydicom's reader.
        preload()
        self.thread.start()

    def wake(self) -> None:
        """Look at the journal now (for jobs another process queued)."""
        self.delivery.wake()

    def stop(self, timeout: float | None = None) -> None:
        """Cancel the current association (its jobs go back to queued), end the loop, release the lock."""
        self.delivery.shutdown()
        if self.thread.ident is not None:
            self.thread.join(timeout)
        self.outbox.unlock_delivery(self.lock)
