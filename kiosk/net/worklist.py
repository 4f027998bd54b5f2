"""Modality Worklist C-FIND SCU: today's (or any day's) orders for this station.

Return keys cover what the dicomizer maps: the Ez DICOM Print to PACS worklist
key table plus the IHE Scheduled Workflow mapping (PS3.4 Table K.6-1, IHE RAD
TF-2 Table 4.6-x): patient, order, requested procedure and scheduled step.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kiosk.config import LocalConfig, NodeConfig
from kiosk.net.find import Matches, date_filter, find, query_charset, time_filter

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"

RETURN_KEYS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "OtherPatientIDs",
    "PatientAge", "PatientWeight", "PatientSize", "AccessionNumber", "ReferringPhysicianName", "StudyInstanceUID",
    "RequestedProcedureID", "RequestedProcedureDescription", "StudyID", "AdmissionID",
    "RequestingPhysician", "RequestedProcedurePriority",
)
# Asked for whole (an empty sequence is universal matching, PS3.4 C.2.2.2.6): the item's
# attributes are whatever the RIS holds (issuer qualifiers, other IDs and their issuers).
SEQUENCE_KEYS = ("IssuerOfPatientIDQualifiersSequence", "OtherPatientIDsSequence", "IssuerOfAccessionNumberSequence")
STEP_KEYS = (
    "ScheduledStationAETitle", "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime", "Modality",
    "ScheduledPerformingPhysicianName", "ScheduledProcedureStepDescription", "ScheduledProcedureStepID",
    "ScheduledStationName", "ScheduledProcedureStepLocation",
)


@dataclass(frozen=True)
class WorklistQuery:
    """Matching keys; empty strings match everything. ``date``: today, YYYYMMDD, a range, or '' for any;
    ``time``: the step's start time, HHMM, HHMMSS or a range HHMM-HHMM (either end open)."""

    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    date: str = "today"
    modality: str = ""
    station_aet: str = ""
    birth_date: str = ""
    sex: str = ""
    referring_physician: str = ""
    procedure: str = ""  # Requested Procedure Description (wildcards * and ?)
    study_uid: str = ""
    time: str = ""


def build_identifier(query: WorklistQuery) -> "Dataset":
    """The C-FIND identifier: matching keys set, every return key present."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = Dataset()
    charset = query_charset(query.patient_name, query.referring_physician, query.procedure)
    if charset:
        ds.SpecificCharacterSet = charset
    for key in RETURN_KEYS:
        setattr(ds, key, "")
    for key in SEQUENCE_KEYS:
        setattr(ds, key, Sequence([]))
    ds.PatientName = query.patient_name
    ds.PatientID = query.patient_id
    ds.AccessionNumber = query.accession
    ds.PatientBirthDate = date_filter(query.birth_date or None)
    ds.PatientSex = query.sex.upper()
    ds.ReferringPhysicianName = query.referring_physician
    ds.RequestedProcedureDescription = query.procedure
    ds.StudyInstanceUID = query.study_uid
    code = Dataset()
    code.CodeValue = code.CodingSchemeDesignator = code.CodeMeaning = ""
    ds.RequestedProcedureCodeSequence = Sequence([code])
    ref = Dataset()
    ref.ReferencedSOPClassUID = ref.ReferencedSOPInstanceUID = ""
    ds.ReferencedStudySequence = Sequence([ref])
    step = Dataset()
    for key in STEP_KEYS:
        setattr(step, key, "")
    step.ScheduledStationAETitle = query.station_aet
    step.ScheduledProcedureStepStartDate = date_filter(query.date)
    step.Modality = query.modality
    step.ScheduledProcedureStepStartTime = time_filter(query.time)
    step_code = Dataset()
    step_code.CodeValue = step_code.CodingSchemeDesignator = step_code.CodeMeaning = ""
    step.ScheduledProtocolCodeSequence = Sequence([step_code])
    ds.ScheduledProcedureStepSequence = Sequence([step])
    return ds


def find_worklist(node: NodeConfig, local: LocalConfig, query: WorklistQuery, *,
                  cancel: threading.Event | None = None, limit: int = 0) -> Matches:
    """Worklist items as they arrive (names decoded with each response's character set on access)."""
    if not query.station_aet and node.station_ae_title:
        query = WorklistQuery(**{**query.__dict__, "station_aet": node.station_ae_title})
    return find(node, local, MODALITY_WORKLIST_FIND, build_identifier(query), cancel=cancel, limit=limit,
                what="the worklist query")
