"""The watched-folder runner: documents from ``[inbox] folder`` and the print folder filed by the rules,
held for a person, or set aside as unusable (``kiosk inbox run``, and the delivery service).

One pass (``Runner.run_once``):

1. housekeeping: files in ``done/`` older than ``[inbox] done_days`` are deleted;
2. the print folder's jobs (``<name>.pdf`` with its ``<name>.json`` sidecar {title, user, host},
   which the backend writes last: its presence means the pair is complete) and the watched
   folder's settled files (``kiosk.inbox.folders``), and files in either's ``held/`` that the
   Inbox does not know (a pass interrupted between the two steps of holding);
3. per document: PDF and image files become captures (``kiosk.inbox.documents``); the rules
   (``kiosk.inbox.rules``) name its patient; exactly one match files it through the station (the
   one pipeline) into the outbox for ``[inbox] send_to`` (empty: the ``[routing]`` rules, source
   ``files``) and the file moves to ``done/``; otherwise it moves to ``held/`` and the Inbox
   (``kiosk.inbox.store``) holds a copy with the reason; a file that cannot be used moves to
   ``failed/`` with ``<file>.reason``. A DICOM file is queued as it is when ``name_pattern``
   matches its name and its own Patient ID (or Accession Number) is the one the name gives;
   otherwise it is held.

A file is moved only after its objects are in the outbox (durable) or its copy in the Inbox
is. One process runs passes at a time (a lock in the Inbox's folder): the touch UI and the
delivery service may both run the inbox.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from drivers.file_reader import FileLoadError
from kiosk.capture import Capture, EncodedFormat
from kiosk.errors import KioskError
from kiosk.inbox import folders
from kiosk.inbox.folders import DONE, FAILED, HELD, Settling
from kiosk.inbox.rules import Keys, keys_from_name, keys_from_text, match
from kiosk.inbox.store import Inbox
from kiosk.private import try_lock
from kiosk.study import StudyContext

if TYPE_CHECKING:
    from kiosk.config import Config
    from kiosk.outbox import Outbox

log = logging.getLogger(__name__)

POLL = 2.0  # seconds between passes of a watcher
LOCK = ".runner.lock"
DICM_OFFSET = 128


def default_print_folder() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("kiosk", appauthor=False)) / "print"


def print_folder(config: "Config") -> Path:
    """Where the CUPS backend leaves print jobs: ``[inbox] print_folder``, by default ``<user data dir>/print``."""
    return Path(config.inbox.print_folder).expanduser() if config.inbox.print_folder else default_print_folder()


def watched_folder(config: "Config") -> Path | None:
    return Path(config.inbox.folder).expanduser() if config.inbox.folder else None


def configured(config: "Config") -> bool:
    """Whether there is anything to watch: ``[inbox] folder``, or a print folder the backend made."""
    return watched_folder(config) is not None or print_folder(config).is_dir()


@dataclass(frozen=True)
class Outcome:
    """What became of one file: ``action`` filed / held / failed; ``detail``: where to, or why."""

    path: Path  # where the file is now
    name: str  # the file name, or the print job's title
    action: str
    detail: str = ""
    objects: int = 0


@dataclass
class RunResult:
    """One pass: ``outcomes`` per file taken, ``waiting`` files not settled yet, ``deleted`` from
    ``done/``, ``problems`` that left files where they were (tried again next pass)."""

    outcomes: list[Outcome] = field(default_factory=list)
    waiting: int = 0
    deleted: int = 0
    problems: list[str] = field(default_factory=list)
    busy: bool = False  # another process was running a pass: this one did nothing

    def of(self, action: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.action == action]


@dataclass(frozen=True)
class _Job:
    path: Path
    base: Path  # the watched folder (the print folder) it came to
    source: str  # "folder" or "print"
    name: str
    user: str = ""
    host: str = ""
    sidecar: Path | None = None

    @property
    def also(self) -> tuple[Path, ...]:
        return (self.sidecar,) if self.sidecar is not None else ()


class _Unusable(Exception):
    """The file cannot be used: it goes to failed/ with ``why``."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Runner:
    """Passes over the watched folders. ``remember``: a long-running watcher that judges settling by
    what it saw (``watch``); a single pass goes by the files' own times."""

    def __init__(self, config: "Config", *, outbox: "Outbox | None" = None, inbox: Inbox | None = None,
                 remember: bool = False, cancel: threading.Event | None = None) -> None:
        self.config = config
        self.inbox = inbox or Inbox(config)
        self._outbox, self._own_outbox = outbox, outbox is None
        self.settling = Settling(config.inbox.settle_seconds, remember)
        self.cancel = cancel

    # -- passes ----------------------------------------------------------------------------------
    def run_once(self) -> RunResult:
        """One pass over the folders (see the module's docstring)."""
        result = RunResult()
        lock = self._lock()
        if lock is None:
            result.busy = True
            return result
        try:
            bases = [b for b in (print_folder(self.config), watched_folder(self.config)) if b is not None]
            for base in bases:
                result.deleted += folders.remove_old_done(base, self.config.inbox.done_days)
            jobs = self._print_jobs(print_folder(self.config), result) + self._folder_jobs(result)
            for job in jobs:
                if self.cancel is not None and self.cancel.is_set():
                    break
                self._take(job, result)
        finally:
            os.close(lock)
        return result

    def watch(self, stop: threading.Event, poll: float = POLL,
              report: Callable[[RunResult], None] | None = None) -> None:
        """Passes every ``poll`` seconds until ``stop`` is set; a pass that fails is logged, not fatal."""
        while not stop.is_set():
            try:
                result = self.run_once()
                if report is not None:
                    report(result)
            except Exception:  # noqa: BLE001 - a watcher (the delivery service's) must go on
                log.exception("inbox: a pass failed; trying again in %g s", poll)
            stop.wait(poll)

    def close(self) -> None:
        if self._own_outbox and self._outbox is not None:
            self._outbox.close()
            self._outbox = None

    # -- what to take ----------------------------------------------------------------------------
    def _folder_jobs(self, result: RunResult) -> list[_Job]:
        base = watched_folder(self.config)
        if base is None:
            return []
        if not base.is_dir():
            result.problems.append(f"{base}: the watched folder is not there (a share not mounted?)")
            return []
        if not _writable(base):
            # Filed but not moved, a file would be filed again at every pass.
            result.problems.append(f"{base}: the kiosk cannot create done/, held/ and failed/ there or move "
                                   "files (no write permission); nothing is taken")
            return []
        jobs = []
        present = folders.candidates(base)
        self.settling.keep_only(set(present))
        for path in present:
            if self.settling.ready(path):
                jobs.append(_Job(path, base, "folder", path.name))
            else:
                result.waiting += 1
        return jobs + [_Job(p, base, "folder", p.name) for p in self._orphans(base)]

    def _print_jobs(self, base: Path, result: RunResult) -> list[_Job]:
        if not base.is_dir():
            return []
        if not _writable(base):
            result.problems.append(f"{base}: the print folder is not writable for the kiosk; no job is taken")
            return []
        jobs = []
        for folder in (base, base / HELD):
            for sidecar in sorted(folder.glob("*.json")) if folder.is_dir() else ():
                pdf = sidecar.with_suffix(".pdf")
                if folders.is_temporary(sidecar.name) or not pdf.is_file():
                    continue
                if folder != base and self.inbox.holding(pdf) is not None:
                    continue
                jobs.append(self._print_job(base, pdf, sidecar))
        return jobs

    def _print_job(self, base: Path, pdf: Path, sidecar: Path) -> _Job:
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}  # the document still counts; its title is then its file name
        text = {key: str(data.get(key, "") or "") for key in ("title", "user", "host")}
        return _Job(pdf, base, "print", text["title"] or pdf.name, text["user"], text["host"], sidecar)

    def _orphans(self, base: Path) -> list[Path]:
        """Files in ``held/`` the Inbox holds no copy of (a pass stopped between moving and copying)."""
        held = folders.candidates(base / HELD)
        if not held:
            return []
        known = {item.original for item in self.inbox.held()}
        return [p for p in held if str(p) not in known]

    # -- one file --------------------------------------------------------------------------------
    def _take(self, job: _Job, result: RunResult) -> None:
        try:
            outcome = self._handle(job)
        except _Unusable as unusable:
            outcome = self._fail(job, unusable.why)
        except (KioskError, OSError) as error:
            # The outbox is full, the share went away...: the file stays, the next pass tries again.
            text = error.message if isinstance(error, KioskError) else (error.strerror or str(error))
            result.problems.append(f"{job.path.name}: {text}")
            log.warning("inbox: %s left in place: %s", job.path, text)
            return
        self.settling.forget(job.path)
        result.outcomes.append(outcome)

    def _handle(self, job: _Job) -> Outcome:
        if _is_dicom(job.path):
            return self._dicom(job)
        from kiosk.inbox.documents import captures_of, pdf_pages

        try:
            captures = captures_of(job.path)
        except FileLoadError as error:
            raise _Unusable(_why(error)) from None
        pdf = captures[0].encoded if captures[0].encoded_format is EncodedFormat.PDF else None
        keys = keys_from_name(self.config, job.name)
        if keys is None and pdf is not None:
            keys = keys_from_text(self.config, pdf)
        if keys is None:
            return self._hold(job, self._no_rule_reason(pdf is not None))
        found = match(self.config, keys, self.cancel)
        if found.context is None:
            return self._hold(job, found.reason)
        if pdf is not None and self.config.inbox.as_pages:
            try:
                captures = pdf_pages(job.path, captures[0])
            except FileLoadError as error:
                raise _Unusable(_why(error)) from None
        try:
            objects, names = self._file(captures, found.context)
        except KioskError as error:
            if _is_outbox_full(error):
                raise
            return self._hold(job, f"found in the {found.found_in} but it could not be filed: {error.message}")
        moved = folders.move_aside(job.path, job.base, DONE, also=job.also)
        log.info("inbox: %s filed (%s, %d object(s) for %s)", job.path.name, found.found_in, objects, ", ".join(names))
        how = keys.describe() if keys.where == "name" else "the PDF's text"
        return Outcome(moved, job.name, "filed",
                       f"{objects} object(s) queued for {', '.join(names)} ({found.found_in} match by {how})", objects)

    def _no_rule_reason(self, is_pdf: bool) -> str:
        inbox = self.config.inbox
        if not inbox.name_pattern and not inbox.text_pattern:
            return "no rule is configured to find the patient ([inbox] name_pattern, text_pattern)"
        looked = ["the name does not match name_pattern"] if inbox.name_pattern else []
        if inbox.text_pattern:
            looked.append("the PDF's text does not match text_pattern" if is_pdf
                          else "text_pattern reads only PDFs")
        return "; ".join(looked)

    def _file(self, captures: Sequence[Capture], context: StudyContext) -> tuple[int, list[str]]:
        """Build and queue the document's objects through the station; returns (objects, destinations)."""
        from kiosk.dicomize import BuildOptions
        from kiosk.existing_study import join_study
        from kiosk.routing import of_capture
        from kiosk.station import OutboxOutput, Station

        study, first_series = join_study(context, self.config)
        options = BuildOptions.from_config(self.config, first_series_number=first_series)
        routed = [of_capture(c, options.modality or study.modality) for c in captures]
        destinations, commitment = self._destinations(routed)
        station = Station.stream(study, options, [OutboxOutput(self._open_outbox(), destinations, commitment)])
        try:
            station.add_pages(list(captures))
        except BaseException:
            station.abandon()
            raise
        station.finish()
        return station.objects, list(destinations)

    def _dicom(self, job: _Job) -> Outcome:
        from pydicom import dcmread
        from pydicom.errors import InvalidDicomError

        from kiosk.routing import of_dataset
        from kiosk.station import OutboxOutput, Station

        try:
            ds = dcmread(job.path, stop_before_pixels=True,
                         specific_tags=["PatientID", "AccessionNumber", "Modality", "ConversionType", "SOPClassUID"])
        except (InvalidDicomError, OSError, ValueError, EOFError):
            raise _Unusable("is not a readable DICOM file. Check it with dcmdump; send a good copy again.") from None
        keys = keys_from_name(self.config, job.name)
        if keys is None or not _names_object(keys, ds):
            return self._hold(job, "a DICOM file is sent as it is only when name_pattern matches its name and the "
                                   "file's own Patient ID or Accession Number is the one the name gives")
        destinations, commitment = self._destinations([of_dataset(ds)])
        station = Station()
        station.queue_files([job.path], OutboxOutput(self._open_outbox(), destinations, commitment))
        station.finish()
        moved = folders.move_aside(job.path, job.base, DONE, also=job.also)
        log.info("inbox: DICOM file %s queued as it is for %s", job.path.name, ", ".join(destinations))
        return Outcome(moved, job.name, "filed", f"queued as it is for {', '.join(destinations)}", 1)

    def _destinations(self, routed: list[Any]) -> tuple[dict[str, dict], set[str]]:
        from kiosk.outbox.destinations import parse_destination
        from kiosk.routing import route

        names = self.config.inbox.send_to or list(route(self.config, routed))
        if not names:
            raise KioskError("no destination", "set [inbox] send_to, or configure destinations and [routing]")
        destinations, commitment = {}, set()
        for text in names:
            name, spec = parse_destination(self.config, text)
            destinations[name] = spec
            confirms = spec["kind"] == "dicom" or (spec["kind"] == "stow" and spec.get("commitment_node"))
            if confirms and spec.get("storage_commitment"):
                commitment.add(name)
        return destinations, commitment

    def _open_outbox(self) -> "Outbox":
        if self._outbox is None:
            from kiosk.outbox import Outbox

            self._outbox = Outbox.from_config(self.config)
        return self._outbox

    # -- where it goes ---------------------------------------------------------------------------
    def _hold(self, job: _Job, reason: str) -> Outcome:
        path = job.path
        if path.parent != job.base / HELD:
            path = folders.move_aside(path, job.base, HELD, also=job.also)
        item = self.inbox.hold(path, source=job.source, name=job.name, reason=reason, user=job.user, host=job.host,
                               original=str(path))
        log.info("inbox: %s held as %s", path.name, item.id)
        return Outcome(path, job.name, "held", reason)

    def _fail(self, job: _Job, why: str) -> Outcome:
        what = (f"{why}\nThis file was not sent. Fix it and put it into the watched folder again, "
                "or delete it.")
        moved = folders.move_aside(job.path, job.base, FAILED, what, also=job.also)
        log.warning("inbox: %s moved to failed/: %s", job.path.name, why)
        return Outcome(moved, job.name, "failed", why)

    def _lock(self) -> int | None:
        return try_lock(self.inbox.base / LOCK)


def run_once(config: "Config", *, outbox: "Outbox | None" = None, inbox: Inbox | None = None) -> RunResult:
    """One pass over ``[inbox] folder`` and the print folder (settled by the files' own times)."""
    runner = Runner(config, outbox=outbox, inbox=inbox)
    try:
        return runner.run_once()
    finally:
        runner.close()


def _writable(base: Path) -> bool:
    """Whether the subfolders exist or can be made, and files can be moved out of ``base``."""
    try:
        for name in folders.SUBFOLDERS:
            (base / name).mkdir(exist_ok=True)
    except OSError:
        return False
    return os.access(base, os.W_OK | os.X_OK) and all(os.access(base / n, os.W_OK | os.X_OK)
                                                      for n in folders.SUBFOLDERS)


def _why(error: FileLoadError) -> str:
    """A reason file's first line: the problem and what to do (the path is the reason file's own name)."""
    return f"{error.problem}" + (f"; {error.hint}" if error.hint else "")


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(DICM_OFFSET)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _names_object(keys: Keys, ds: Any) -> bool:
    """Whether every key the name gives is the DICOM object's own."""
    pairs = [(keys.patient_id, str(ds.get("PatientID", "") or "")), (keys.accession, str(ds.get("AccessionNumber", "")
                                                                                          or ""))]
    return all(key == own for key, own in pairs if key)


def _is_outbox_full(error: KioskError) -> bool:
    from kiosk.outbox import OutboxFullError

    return isinstance(error, OutboxFullError)
