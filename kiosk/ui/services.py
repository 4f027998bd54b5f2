"""The UI's one seam to the rest of the kiosk: worklist, query, devices, removable media, send, outbox.

Every method here may block (network, devices, disk) and is called from a
worker thread, except the cheap ``*_configured``/``*_available`` checks. The
UI adds no DICOM or device logic: this module only calls ``kiosk.net``,
``drivers``, ``kiosk.station`` (which builds and queues a session's objects),
``kiosk.media`` (patients' CDs and USB sticks) and ``kiosk.outbox`` and
translates their results for the screens.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from kiosk.config import Config, NodeConfig, values_of
from kiosk.errors import KioskError
from kiosk.operators import OperatorRegister
from kiosk.ui.background import background_priority
from kiosk.ui.strings import T

log = logging.getLogger(__name__)

FEEDER = " (feeder)"
FILES = "files:"  # the import tile; each chosen file is then opened as file:PATH


class Unavailable(KioskError):
    """A part of the kiosk this screen needs is not installed or not built yet."""


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise Unavailable(f"{name} is not available ({exc})", "update the kiosk installation") from None


@dataclass
class SendJob:
    """One Send press: the outbox job ids per destination, and how many objects were queued."""

    jobs: dict[str, list[int]]
    total: int


class Found(list):
    """StudyContexts from a C-FIND; ``cut_at`` is the limit the answer was cut at (0: complete);
    ``offline_since`` (time.time()) when the node could not be reached and these are its last answer."""

    cut_at = 0
    offline_since = 0.0

    @classmethod
    def of(cls, datasets: list[Any], make: Callable[[Any], Any], matches: Any = None,
           offline_since: float = 0.0) -> "Found":
        """``make(ds)`` for each dataset, noting whether ``matches`` (the ``kiosk.net.find.Matches``
        they came from, once iterated) were cut short."""
        found = cls(_with_reading(ds, make) for ds in datasets)
        found.cut_at = matches.limit if matches is not None and matches.truncated else 0
        found.offline_since = offline_since
        return found


def _with_reading(ds: Any, make: Callable[[Any], Any]) -> Any:
    """``make(ds)``; where values declared Latin-1 hold UTF-8 bytes, with the UTF-8 reading noted for the
    operator to choose from (``StudyContext.misread``)."""
    from kiosk.dicomize.charset import misreadings, read_as_utf8

    if not misreadings(ds):
        return make(ds)
    return make(ds).with_reading(make(read_as_utf8(ds)))


class Services:
    """Thin adapters over the kiosk modules, built from one ``Config``."""

    def __init__(self, config: Config, demo: Any = None) -> None:
        self.config = config
        self.demo = demo
        self._outbox: Any = None
        self._delivery: Any = None  # kiosk.station.BackgroundDelivery
        self._lock = threading.Lock()
        self.listener: Any = None
        self.listener_problem = ""
        self._closed = False
        self.operators = OperatorRegister()  # who may sign in (kiosk operator add)

    # -- worklist and query -------------------------------------------------------
    def worklist_configured(self) -> bool:
        return self.config.worklist is not None

    def query_available(self) -> bool:
        return self.config.query is not None and _has("kiosk.net.query")

    def worklist(self, date: str = "today", modality: str = "", **keys: str) -> list[Any]:
        """Scheduled items for this station as StudyContexts: ``date`` is today, YYYYMMDD, a range
        YYYYMMDD-YYYYMMDD or '' (any); ``modality`` '' for any; ``keys`` more ``WorklistQuery`` keys."""
        worklist = _module("kiosk.net.worklist")
        from kiosk.study import StudyContext

        from kiosk import worklist_cache
        from kiosk.net.errors import NetworkError
        from kiosk.net.find import date_filter

        node = self.config.worklist

        def make(ds: Any) -> Any:
            return StudyContext.from_worklist(ds, node.ae_title)

        query = "|".join([date_filter(date), modality, *(f"{k}={v}" for k, v in sorted(keys.items()))])
        matches = worklist.find_worklist(node, self.config.local,
                                         worklist.WorklistQuery(date=date, modality=modality, **keys),
                                         limit=getattr(node, "max_results", 0))
        try:
            items = list(matches)
        except NetworkError:
            kept = worklist_cache.load(self.cache_dir, query)
            if kept is None:
                raise
            log.warning("the worklist server cannot be reached: showing its answer of %s",
                        dt.datetime.fromtimestamp(kept.saved).strftime("%Y-%m-%d %H:%M"))
            return Found.of(kept.items, make, offline_since=kept.saved)
        worklist_cache.save(self.cache_dir, query, items)
        return Found.of(items, make, matches)

    @property
    def cache_dir(self) -> Path:
        """Where the worklist's last answer is kept (with the sessions: both hold patient data)."""
        from kiosk.session import sessions_dir

        return sessions_dir(self.config.ui.sessions_dir)

    def find_studies(self, text: str) -> list[Any]:
        """Studies on the PACS for a patient ID or accession number (or a name, as a prefix)."""
        query = _module("kiosk.net.query")
        from kiosk.study import StudyContext

        text = text.strip()
        if not text:
            raise KioskError(T["find_needs_text"], T["find_needs_text_hint"])
        node = self.config.query
        for keys in ({"patient_id": text}, {"accession": text}, {"patient_name": f"{text.upper()}*"}):
            results = query.find_studies(node, self.config.local, query.StudyQuery(**keys),
                                         limit=getattr(node, "max_results", 0))
            found = Found.of(list(results), lambda ds: StudyContext.from_pacs_study(ds, node.ae_title), results)
            if found:
                return found
        return Found()

    def patient_id_holders(self, patient_id: str) -> list[str]:
        """Names already filed under ``patient_id`` on the PACS and in the worklist (any date, any station).

        A new patient must not get an ID that belongs to someone else: the
        images would join that person's record.
        """
        names: set[str] = set()
        if self.query_available():
            query = _module("kiosk.net.query")
            for ds in query.find_studies(self.config.query, self.config.local, query.StudyQuery(patient_id=patient_id),
                                         limit=20):
                names.add(str(ds.get("PatientName", "")))
        if self.worklist_configured():
            worklist = _module("kiosk.net.worklist")
            wanted = worklist.WorklistQuery(patient_id=patient_id, date="", station_aet="*")
            for ds in worklist.find_worklist(self.config.worklist, self.config.local, wanted, limit=20):
                names.add(str(ds.get("PatientName", "")))
        return sorted(names)

    def echo(self, node: NodeConfig) -> float:
        """Seconds a C-ECHO (a QIDO-RS search for a DICOMweb node) took; raises the network error otherwise."""
        from kiosk.net.echo import echo

        if node.stow_url:
            return _module("kiosk.net.stow").check(node).round_trip
        result = echo(node, self.config.local)
        return result.total

    # -- our DICOM listener ----------------------------------------------------------
    def start_listener(self) -> None:
        """Run our SCP on ``[local] port`` while the UI runs: C-ECHO to the kiosk works, and storage
        commitment reports reach the delivery thread, whose requests share it (``Listener.running``).
        A busy port is reported in ``listener_problem`` (shown in Settings), not raised."""
        try:
            from kiosk.net.listener import Listener

            with self._lock:
                if self._closed or Listener.running(self.config.local.port) is not None:
                    return
                self.listener = Listener.from_config(self.config).start()
            self.listener_problem = ""
        except ImportError as exc:
            self.listener_problem = f"kiosk.net is not available ({exc})"
        except KioskError as error:
            self.listener_problem = error.message
            log.warning("no DICOM listener: %s", error.message)

    # -- devices -----------------------------------------------------------------
    def devices(self) -> list[Any]:
        """Attached devices (demo devices included) as ``drivers.device.DeviceInfo``."""
        found = _module("drivers.registry").discover_all()
        for scheme, problem in found.unavailable.items():
            log.info("source %s unavailable: %s", scheme, problem)
        files = _module("drivers.device").DeviceInfo(uri=FILES, name=T["files_source"], kind="files")
        return [d for d in found.devices if d.kind in ("scanner", "camera")] + [files]

    def wristband_camera(self) -> str:
        """The source the patient screen reads wristbands from: ``[barcodes] camera``, else the first
        camera found; "" when there is none."""
        if self.config.barcodes.camera:
            return self.config.barcodes.camera
        return next((d.uri for d in self.devices() if d.kind == "camera"), "")

    def import_start(self) -> str:
        """Where the file chooser opens: removable media when mounted, else the home folder."""
        for media in (Path("/media"), Path("/run/media")):
            mounted = [p for p in media.glob("*/*") if p.is_dir()] if media.is_dir() else []
            if mounted:
                return str(mounted[0])
        return str(Path.home())

    def presets(self) -> list[str]:
        """Preset names; flatbed presets also come as a document-feeder variant."""
        names = []
        for name, settings in _module("drivers.presets").presets(self.config.presets.tables()).items():
            names.append(name)
            if settings.source in (None, "flatbed"):
                names.append(name + FEEDER)
        return names

    def open(self, uri: str, work_dir: Path | None = None) -> Any:
        """Open a source with the [acquisition] settings (clip length, stall timeout); a ``file:`` source also
        with the [video] settings and ``work_dir``, where a video file is copied or transcoded (the session's
        folder: the session then takes the clip's file)."""
        options = values_of(self.config.acquisition)
        if uri.startswith("file:"):
            options.update(video=self.config.video, work_dir=work_dir)
        return _module("drivers.registry").open_device(uri, options)

    def recorder(self, device: Any, folder: Path) -> Any:
        """A ``kiosk.video.recorder.Recorder`` of the open live ``device`` writing into ``folder`` (the
        session's, so the clip is moved in by a rename), with the [video] settings, at most
        ``[acquisition] max_clip_seconds`` long. Imports PyAV: call it off the UI thread."""
        recorder = _module("kiosk.video.recorder")
        return recorder.Recorder(device, folder, self.config.video, max_seconds=self.config.acquisition.max_clip_seconds)

    def cleaner(self, preset_name: str) -> Any:
        """The preset's page clean-up: a ``kiosk.cleanup.Cleaner`` (counts the blank pages it leaves out)."""
        from kiosk.cleanup import Cleaner, CleanUp

        steps = _module("drivers.presets").preset_cleanup(preset_name.removesuffix(FEEDER), self.config.presets.tables())
        return Cleaner(CleanUp.of(steps))

    def configure(self, device: Any, preset_name: str) -> Any:
        presets = _module("drivers.presets")
        feeder = preset_name.endswith(FEEDER)
        settings = presets.preset(preset_name.removesuffix(FEEDER), self.config.presets.tables())
        return device.configure(settings.merged(source="adf") if feeder else settings)

    # -- removable media ----------------------------------------------------------
    def inserted_media(self) -> list[Path]:
        """Mounted CDs and USB sticks that hold DICOM, under ``[media] mount_points``."""
        return _module("kiosk.media.reader").inserted_media(self.config.media.mount_points)

    def writable_media(self) -> list[Path]:
        """Mounted media under ``[media] mount_points`` the kiosk may write to (Copy to USB)."""
        mounted = _module("kiosk.media.reader").mounted_media(self.config.media.mount_points)
        return [root for root in mounted if os.access(root, os.W_OK | os.X_OK)]

    def read_medium(self, root: Path, cancel: threading.Event, progress: Callable[[int], None]) -> Any:
        """What the medium at ``root`` holds (a ``kiosk.media.model.Medium``)."""
        return _module("kiosk.media.reader").read_medium(root, cancel=cancel, progress=progress)

    def compare(self, patient: Any, study: Any, context: Any) -> list[Any]:
        """The reconciliation card's rows: the medium's and the local value of each identifying attribute."""
        return _module("kiosk.media.reconcile").compare(patient, study, context)

    def preview(self, path: Path, size: int) -> Any:
        """An RGB array of a DICOM file's middle frame, at most ``size`` pixels on a side (the PDI web
        content's preview), or None (no pixels, or not decodable)."""
        import numpy as np

        image = _module("kiosk.media.web").render_preview(path)
        if image is None:
            return None
        image = image.convert("RGB")
        image.thumbnail((size, size))
        return np.asarray(image)

    def import_media(self, medium: Any, chosen: list[Any], context: Any, destinations: list[str],
                     progress: Callable[[int, int], None], cancel: threading.Event) -> Any:
        """Queue the ``chosen`` series of ``medium`` under ``context`` (the local patient) for ``destinations``
        (configured names); a worklist item makes it a scheduled import. Returns the ``ImportResult``."""
        from kiosk.outbox.destinations import spec_of_node
        from kiosk.study import WORKLIST

        importer = _module("kiosk.media.importer")
        nodes = {name: self.config.destinations[name] for name in destinations}
        specs = {name: spec_of_node(node) for name, node in nodes.items()}
        commitment = [name for name, node in nodes.items() if node.storage_commitment]
        # Into this process's outbox, whose delivery loop then sends them (as after Send).
        return importer.import_media(self.config, medium, chosen, context, specs, scheduled=context.origin == WORKLIST,
                                     progress=progress, cancel=cancel, commitment=commitment, outbox=self.outbox())

    # -- sending -------------------------------------------------------------------
    def track(self, station: Any) -> None:
        """Report ``station``'s performed procedure step to the RIS (MPPS) when ``[mpps]`` is set."""
        from kiosk.mpps import track

        track(station, self.outbox, self.config)

    def outbox(self) -> Any:
        """The outbox, opened on first use, with its delivery loop running in this process."""
        with self._lock:
            if self._outbox is None:
                core = _module("kiosk.outbox")
                self._outbox = core.Outbox(core.OutboxSettings.from_config(self.config))
                if not self._closed:  # something queued while the app stops: delivered at the next start
                    self._start_delivery()
            return self._outbox

    def _start_delivery(self) -> None:
        from kiosk.station import BackgroundDelivery

        # Delivery threads it starts inherit the lower priority.
        self._delivery = BackgroundDelivery.claim(self._outbox, self.config, poll=1.0, prepare=background_priority)
        if self._delivery is None:
            log.info("another process delivers this outbox; the kiosk only queues")
            return
        self._delivery.start()

    def build_options(self, study: Any = None, operators_name: str = "") -> Any:
        """The station's build options from the configuration (a session adds its own series options);
        for ``study`` (a StudyContext) the first free Series Number of its study on the PACS;
        ``operators_name`` (the signed-in operator, Family^Given) goes into Operators' Name."""
        from kiosk.dicomize import BuildOptions
        from kiosk.existing_study import join_study

        first = join_study(study, self.config)[1] if study is not None else 1
        return BuildOptions.from_config(self.config, first_series_number=first, operators_name=operators_name or None)

    def send(self, station: Any, destinations: list[str], operators_name: str = "",
             folders: Sequence[Path] = (), allow_mismatch: bool = False) -> SendJob:
        """Build the station's objects one at a time, each queued durably in the outbox for each destination
        (configured names) and each of ``folders`` (a USB stick: a File-set with a DICOMDIR);
        ``operators_name``: who is signed in (taken when Send was pressed); ``allow_mismatch``: pages
        whose barcode names another patient go too (the admin PIN was given)."""
        from kiosk.outbox.destinations import spec_of_node
        from kiosk.station import OutboxOutput

        nodes = {name: self.config.destinations[name] for name in destinations}
        specs = {name: spec_of_node(node) for name, node in nodes.items()}
        specs.update(folder_destination(self.config, folder) for folder in folders)
        commitment = [name for name, node in nodes.items() if node.storage_commitment]
        # A session's clips are its own files: linked into the outbox, not copied.
        station.send([OutboxOutput(self.outbox(), specs, commitment, link_clips=True)],
                     self.build_options(station.study, operators_name), allow_mismatch=allow_mismatch)
        return SendJob({name: list(station.jobs.get(name, [])) for name in specs}, station.objects)

    def burner_configured(self) -> bool:
        return bool(self.config.media.burner)

    def burn(self, job_ids: Sequence[int], progress: Callable[[int, int], None] | None = None) -> Any:
        """Burn the objects of the outbox jobs ``job_ids`` (a session's: each object once) to a disc in
        ``[media] burner``; returns the ``ExportResult`` (what is on the disc, what was left out and why)."""
        from kiosk.media.profiles import disc_profile
        from kiosk.outbox.export import burn_jobs

        media = self.config.media
        return burn_jobs(self.outbox(), job_ids, media.burner, disc_profile(media.profile),
                         web_content=media.web_content, progress=progress)

    def job_states(self, job: SendJob) -> dict[str, list[Any]]:
        """The current outbox jobs of a send, per destination."""
        outbox = self.outbox()
        return {name: outbox.journal.jobs_by_id(ids) for name, ids in job.jobs.items()}

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        return self.outbox().events.subscribe(callback)

    # -- outbox screen -----------------------------------------------------------
    def outbox_jobs(self, limit: int = 200) -> list[Any]:
        return self.outbox().journal.jobs(limit=limit)

    def outbox_steps(self, limit: int = 50) -> list[Any]:
        """The latest performed procedure step (MPPS) messages."""
        return self.outbox().step_messages(limit=limit)

    def retry(self, job_ids: list[int]) -> int:
        return self.outbox().retry(job_ids)

    def remove(self, job_ids: list[int]) -> int:
        return self.outbox().remove(job_ids, force=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            listener, self.listener = self.listener, None
        if listener is not None:
            listener.stop()
        if self._delivery is not None:
            self._delivery.stop(timeout=10)
        if self._outbox is not None:
            self._outbox.close()
        self._outbox = self._delivery = None


def _has(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def folder_destination(config: Config, folder: Path) -> tuple[str, dict[str, Any]]:
    """The outbox destination writing a File-set into ``folder``: ("folder:PATH", spec), as ``--to folder:PATH``."""
    from kiosk.outbox.destinations import parse_destination

    return parse_destination(config, f"folder:{folder}")


