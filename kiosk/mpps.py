"""Modality Performed Procedure Step (IHE RAD TF-2 4.6 / 4.7): what a session's step tells the RIS.

``track(station, outbox, config)`` follows one station: N-CREATE (IN PROGRESS) at its first capture
or when a streaming station starts; N-SET COMPLETED once every object is in the outbox, listing
each series and exactly its instances; N-SET DISCONTINUED (with a reason code) when the session
ends without sending, is cancelled or idles out. The messages wait durably in the outbox's step
queue (``kiosk.outbox.steps``) and the delivery sends them in order. An unscheduled session (no
worklist item) is a step with empty scheduled-step keys and the form's patient, as IHE asks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable

from kiosk.audit import events, trail
from kiosk.audit.codes import Action
from kiosk.outbox.steps import N_CREATE, N_SET
from kiosk.study import WORKLIST

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from kiosk.config import Config
    from kiosk.outbox import Outbox
    from kiosk.station import Station

log = logging.getLogger(__name__)

IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
# PS3.16 CID 9300 Procedure Discontinuation Reasons.
UNSPECIFIED_REASON = ("110513", "DCM", "Discontinued for unspecified reason")
WRONG_WORKLIST_ENTRY = ("110514", "DCM", "Incorrect worklist entry selected")

# Copied from the context into the Scheduled Step Attributes Sequence item (empty when unscheduled).
_SCHEDULED = (("AccessionNumber", "accession"), ("RequestedProcedureID", "requested_procedure_id"),
              ("RequestedProcedureDescription", "requested_procedure_description"),
              ("ScheduledProcedureStepID", "scheduled_step_id"),
              ("ScheduledProcedureStepDescription", "scheduled_step_description"))
_PATIENT = (("PatientName", "patient_name"), ("PatientID", "patient_id"), ("PatientBirthDate", "birth_date"),
            ("PatientSex", "sex"))


def _code(value: tuple[str, str, str]) -> "Dataset":
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value
    return item


def _sequence(value: tuple) -> Any:
    from pydicom.sequence import Sequence

    from kiosk.study import sequence_items

    return Sequence(sequence_items(value))


def in_progress(study: Any, step: Any, config: "Config") -> "Dataset":
    """The N-CREATE attributes (PS3.4 Table F.7.2-1) of ``step`` (a ``PerformedStep``) for ``study``."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from kiosk.dicomize.batch import default_study_id

    scheduled = Dataset()
    scheduled.StudyInstanceUID = step.study_uid
    scheduled.ReferencedStudySequence = _sequence(study.referenced_studies)
    for keyword, name in _SCHEDULED:
        setattr(scheduled, keyword, getattr(study, name))
    if study.issuer_of_accession:
        scheduled.IssuerOfAccessionNumberSequence = _sequence(study.issuer_of_accession)
    scheduled.ScheduledProtocolCodeSequence = _sequence(study.scheduled_protocol_codes)
    ds = Dataset()
    ds.ScheduledStepAttributesSequence = Sequence([scheduled])
    for keyword, name in _PATIENT:
        setattr(ds, keyword, getattr(study, name))
    if study.issuer:
        ds.IssuerOfPatientID = study.issuer
    ds.ReferencedPatientSequence = Sequence([])
    ds.PerformedProcedureStepID = step.id
    ds.PerformedStationAETitle = config.local.ae_title
    ds.PerformedStationName = config.local.station_name
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = step.start.strftime("%Y%m%d")
    ds.PerformedProcedureStepStartTime = step.start.strftime("%H%M%S")
    ds.PerformedProcedureStepStatus = IN_PROGRESS
    ds.PerformedProcedureStepDescription = study.scheduled_step_description or study.requested_procedure_description
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = _sequence(study.procedure_codes)
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = study.modality or "OT"
    ds.StudyID = study.study_id or default_study_id(study, step)
    ds.PerformedProtocolCodeSequence = _sequence(study.scheduled_protocol_codes)
    ds.PerformedSeriesSequence = Sequence([])
    _charset(ds, study)
    return ds


def final(status: str, study: Any, series: dict[str, dict[str, Any]], end: dt.datetime,
          reason: tuple[str, str, str] | None = None) -> "Dataset":
    """The N-SET attributes ending a step: ``status`` COMPLETED or DISCONTINUED, the end, and each
    series made (``series``: Series Instance UID -> description, operator, images, documents)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = end.strftime("%Y%m%d")
    ds.PerformedProcedureStepEndTime = end.strftime("%H%M%S")
    if reason is not None:
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = Sequence([_code(reason)])
    items = []
    for uid, made in series.items():
        item = Dataset()
        item.PerformingPhysicianName = ""
        item.ProtocolName = made["description"] or "kiosk capture"
        item.OperatorsName = made["operator"]
        item.SeriesInstanceUID = uid
        item.SeriesDescription = made["description"]
        item.RetrieveAETitle = ""
        item.ReferencedImageSequence = Sequence([_reference(*pair) for pair in made["images"]])
        item.ReferencedNonImageCompositeSOPInstanceSequence = Sequence([_reference(*pair) for pair in made["documents"]])
        items.append(item)
    ds.PerformedSeriesSequence = Sequence(items)
    _charset(ds, study)
    return ds


def _reference(sop_class: str, sop_instance: str) -> "Dataset":
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
    return item


def _charset(ds: "Dataset", study: Any) -> None:
    from kiosk.dicomize.charset import apply_charset

    apply_charset(ds, study.charset)


class StepTracker:
    """The MPPS of one station, queued in the outbox ``outbox()`` gives (opened when first needed) for
    ``config.mpps``."""

    def __init__(self, station: "Station", outbox: Callable[[], "Outbox"], config: "Config") -> None:
        self.station, self.outbox, self.config = station, outbox, config
        self.node = config.mpps
        self.begun = self.ended = False
        self.series: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.stop = station.subscribe(self._on_event)
        if station.streaming:  # the step starts with the acquisition
            self._begin()

    def _on_event(self, event: Any) -> None:
        with self._lock:
            if event.name in ("capture_added", "object_built") and not self.begun:
                self._begin()
            if event.name == "object_built":
                self._note(event.dataset)
            elif event.name == "delivering" and not self.ended:
                if self.series:
                    self._end(COMPLETED)
                else:
                    self._end(DISCONTINUED, UNSPECIFIED_REASON)
            elif event.name in ("finished", "abandoned") and self.begun and not self.ended:
                self._end(DISCONTINUED, UNSPECIFIED_REASON)
            if event.name in ("finished", "abandoned"):
                self.stop()

    def _begin(self) -> None:
        step = self.station.performed_step(self.config.local.uid_root)
        self.begun = True
        self._queue(N_CREATE, IN_PROGRESS, in_progress(self.station.study, step, self.config))

    def _note(self, ds: Any) -> None:
        made = self.series.setdefault(str(ds.SeriesInstanceUID), {
            "description": str(ds.get("SeriesDescription", "")), "operator": str(ds.get("OperatorsName", "")),
            "images": [], "documents": []})
        kind = "documents" if "PixelData" not in ds else "images"
        made[kind].append((str(ds.SOPClassUID), str(ds.SOPInstanceUID)))

    def _end(self, status: str, reason: tuple[str, str, str] | None = None) -> None:
        self.ended = True
        ds = final(status, self.station.study, self.series, dt.datetime.now(), reason)
        self._queue(N_SET, status, ds)

    def _queue(self, action: str, status: str, ds: Any) -> None:
        step = self.station.performed_step()
        study = self.station.study
        label = f"step {step.id}" + (f", accession {study.accession}" if study.accession else ", unscheduled")
        spec = dataclasses.asdict(self.node)
        self.outbox().queue_step(step.uid, action, status, label, self.node.name, spec, ds.to_json_dict())
        log.info("MPPS %s (%s) queued for %s: %s", action, status, self.node.name, label)
        self._audit(action, status, step.uid)

    def _audit(self, action: str, status: str, step_uid: str) -> None:
        """Procedure Record (the step created or updated); Order Record when it starts a worklist order."""
        study = self.station.study
        app, who, peer = trail.application(), trail.operator(), trail.peer(self.node)
        created = action == N_CREATE
        trail.record(events.procedure_record(app, events.Study.of(study), step_uid,
                                             Action.CREATE if created else Action.UPDATE, peer, who,
                                             description=f"MPPS {action} {status} queued"))
        if created and study.origin == WORKLIST:
            trail.record(events.order_record(app, events.Study.of(study), Action.UPDATE, who))


def track(station: "Station", outbox: "Outbox | Callable[[], Outbox] | None", config: "Config") -> StepTracker | None:
    """Follow ``station`` with MPPS when ``[mpps]`` is configured and its objects go to an outbox
    (``outbox`` or a function opening it)."""
    if config.mpps is None or outbox is None:
        return None
    return StepTracker(station, outbox if callable(outbox) else (lambda: outbox), config)
