"""A strict MPPS SCP (no MPPS SCP is packaged for Debian): pynetdicom, enforcing PS3.4 F.7.2.

N-CREATE: every Type 1 attribute with a value and every Type 2 attribute present, status IN
PROGRESS, a SOP Instance UID not seen before (0x0111 otherwise). N-SET: a known step (0x0112
otherwise) that is still IN PROGRESS (0xC310 otherwise); a final status needs the end date and
time and, for COMPLETED, a Performed Series Sequence whose items hold their Type 1 and 2
attributes. Every message is recorded in ``messages`` in the order it arrived, refused or not.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from tests.support.peers import HOST, free_port

MPPS = "1.2.840.10008.3.1.2.3.3"
CREATE_TYPE1 = ("ScheduledStepAttributesSequence", "PerformedProcedureStepID", "PerformedStationAETitle",
                "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "PerformedProcedureStepStatus",
                "Modality")
CREATE_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferencedPatientSequence",
                "PerformedStationName", "PerformedLocation", "PerformedProcedureStepDescription",
                "PerformedProcedureTypeDescription", "ProcedureCodeSequence", "PerformedProcedureStepEndDate",
                "PerformedProcedureStepEndTime", "StudyID", "PerformedProtocolCodeSequence", "PerformedSeriesSequence")
SCHEDULED_TYPE2 = ("ReferencedStudySequence", "AccessionNumber", "RequestedProcedureID", "RequestedProcedureDescription",
                   "ScheduledProcedureStepID", "ScheduledProcedureStepDescription", "ScheduledProtocolCodeSequence")
SERIES_TYPE1 = ("ProtocolName", "SeriesInstanceUID")
SERIES_TYPE2 = ("PerformingPhysicianName", "OperatorsName", "SeriesDescription", "RetrieveAETitle",
                "ReferencedImageSequence", "ReferencedNonImageCompositeSOPInstanceSequence")


@dataclass
class Message:
    action: str  # N-CREATE or N-SET
    uid: str
    dataset: Dataset
    status: int


@dataclass
class MppsScp:
    """The SCP on ``port`` (AE title ``aet``); ``steps`` holds each step's attributes as they stand."""

    port: int
    aet: str = "RIS"
    messages: list[Message] = field(default_factory=list)
    steps: dict[str, Dataset] = field(default_factory=dict)
    server: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "MppsScp":
        from pynetdicom import AE, evt

        ae = AE(ae_title=self.aet)
        ae.add_supported_context(MPPS)
        handlers = [(evt.EVT_N_CREATE, self._create), (evt.EVT_N_SET, self._set)]
        self.server = ae.start_server((HOST, self.port), block=False, evt_handlers=handlers)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def _create(self, event: Any) -> tuple[int, Dataset | None]:
        ds, uid = event.attribute_list, str(event.request.AffectedSOPInstanceUID)
        status = self._check_create(ds, uid)
        with self.lock:
            self.messages.append(Message("N-CREATE", uid, ds, status))
            if status == 0:
                self.steps[uid] = copy.deepcopy(ds)  # the message as it came stays in ``messages``
        return status, ds if status == 0 else None

    def _check_create(self, ds: Dataset, uid: str) -> int:
        if uid in self.steps:
            return 0x0111
        if any(not ds.get(k) for k in CREATE_TYPE1) or any(k not in ds for k in CREATE_TYPE2):
            return 0x0120
        if ds.PerformedProcedureStepStatus != "IN PROGRESS":
            return 0x0106
        scheduled = ds.ScheduledStepAttributesSequence
        if len(scheduled) < 1 or not scheduled[0].get("StudyInstanceUID") or any(k not in scheduled[0] for k in SCHEDULED_TYPE2):
            return 0x0120
        return 0

    def _set(self, event: Any) -> tuple[int, Dataset | None]:
        ds, uid = event.modification_list, str(event.request.RequestedSOPInstanceUID)
        status = self._check_set(ds, uid)
        with self.lock:
            self.messages.append(Message("N-SET", uid, ds, status))
            if status == 0:
                for element in ds:
                    self.steps[uid][element.tag] = element
        return status, ds if status == 0 else None

    def _check_set(self, ds: Dataset, uid: str) -> int:
        step = self.steps.get(uid)
        if step is None:
            return 0x0112
        if step.PerformedProcedureStepStatus != "IN PROGRESS":
            return 0xC310
        status = ds.get("PerformedProcedureStepStatus", "IN PROGRESS")
        if status not in ("IN PROGRESS", "COMPLETED", "DISCONTINUED"):
            return 0x0106
        if status != "IN PROGRESS":
            if not ds.get("PerformedProcedureStepEndDate") or not ds.get("PerformedProcedureStepEndTime"):
                return 0x0121
            series = ds.get("PerformedSeriesSequence", [])
            if status == "COMPLETED" and not series:
                return 0x0121
            for item in series:
                if any(not item.get(k) for k in SERIES_TYPE1) or any(k not in item for k in SERIES_TYPE2):
                    return 0x0120
        return 0


def start_mpps_scp(port: int | None = None) -> MppsScp:
    return MppsScp(port or free_port()).start()
