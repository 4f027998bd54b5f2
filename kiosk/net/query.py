"""Study Root Query/Retrieve C-FIND SCU: the study to add captures to (study and series level); the
instances an archive already holds (image level, for imports)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kiosk.config import LocalConfig, NodeConfig
from kiosk.errors import UsageError
from kiosk.net.find import Matches, date_filter, find, query_charset

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"

STUDY_KEYS = (
    "StudyDate", "StudyTime", "AccessionNumber", "PatientName", "PatientID", "IssuerOfPatientID",
    "PatientBirthDate", "PatientSex", "StudyID", "StudyInstanceUID", "ModalitiesInStudy",
    "ReferringPhysicianName", "StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
)
SERIES_KEYS = (
    "Modality", "SeriesNumber", "SeriesDate", "SeriesTime", "SeriesInstanceUID", "StudyInstanceUID",
    "SeriesDescription", "BodyPartExamined", "NumberOfSeriesRelatedInstances",
)


@dataclass(frozen=True)
class StudyQuery:
    """Matching keys; empty strings match everything. ``level``: STUDY or SERIES (needs ``study_uid``)."""

    level: str = "STUDY"
    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    date: str = ""
    modality: str = ""
    study_uid: str = ""


def build_identifier(query: StudyQuery) -> "Dataset":
    from pydicom.dataset import Dataset

    level = query.level.upper()
    if level not in ("STUDY", "SERIES"):
        raise UsageError(f"query level {query.level!r} is not supported", "use study or series")
    if level == "SERIES" and not query.study_uid:
        raise UsageError("a series query needs the study", "add --study-uid UID (from a study query)")
    ds = Dataset()
    charset = query_charset(query.patient_name)
    if charset:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = level
    for key in STUDY_KEYS if level == "STUDY" else SERIES_KEYS:
        setattr(ds, key, "")
    ds.StudyInstanceUID = query.study_uid
    if level == "STUDY":
        ds.PatientName = query.patient_name
        ds.PatientID = query.patient_id
        ds.AccessionNumber = query.accession
        ds.StudyDate = date_filter(query.date)
        ds.ModalitiesInStudy = query.modality
    else:
        ds.Modality = query.modality
        ds.SeriesDate = date_filter(query.date)
    return ds


def find_studies(node: NodeConfig, local: LocalConfig, query: StudyQuery, *,
                 cancel: threading.Event | None = None, limit: int = 0) -> Matches:
    """Studies (or series of one study) as they arrive."""
    return find(node, local, STUDY_ROOT_FIND, build_identifier(query), cancel=cancel, limit=limit,
                what=f"the {query.level.lower()} query")


def instance_uids(node: NodeConfig, local: LocalConfig, study_uid: str, series_uid: str, *,
                  cancel: threading.Event | None = None) -> set[str]:
    """The SOP Instance UIDs ``node`` holds in one series (an IMAGE level query): what an import skips."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, series_uid, ""
    matches = find(node, local, STUDY_ROOT_FIND, ds, cancel=cancel, what="the instance query")
    return {str(match.get("SOPInstanceUID", "")) for match in matches} - {""}
