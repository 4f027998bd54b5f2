"""Embedded demo peers for ``kiosk demo``: a PACS and a worklist server on loopback.

Both run in-process on pynetdicom, bound to 127.0.0.1 only, on free ports:

* ``DEMOPACS``: Storage SCP for every storage SOP class and transfer syntax,
  writing what it receives to a folder, with C-ECHO, Storage Commitment
  (the N-EVENT-REPORT comes on a new association to the kiosk's listener,
  as real archives do) and Study Root C-FIND at study and series level over
  what it holds: a prior study of ŠIMKOVÁ^ANNA (DEMO002, series 1 and 2) and
  everything stored since;
* ``DEMOWL``: the RIS: Modality Worklist SCP serving a handful of items
  scheduled for today, names in several scripts, with the usual matching
  keys, and MPPS SCP (N-CREATE, N-SET) keeping each step's state.

``DemoPeers.config()`` returns a ``Config`` that points the kiosk at them.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kiosk.config import Config, LocalConfig, NodeConfig

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PACS_AET, WORKLIST_AET, KIOSK_AET = "DEMOPACS", "DEMOWL", "KIOSK"
DEMO_PIN = "1234"

# (name, id, birth date, sex, accession, procedure, modality): fictitious patients.
DEMO_PATIENTS = [
    ("MÜLLER^JÜRGEN", "DEMO001", "19580312", "M", "A1001", "Referral letter", "DOC"),
    ("ŠIMKOVÁ^ANNA", "DEMO002", "19901124", "F", "A1002", "Outside films", "OT"),
    ("ΠΑΠΑΔΟΠΟΥΛΟΣ^ΝΙΚΟΣ", "DEMO003", "19731005", "M", "A1003", "Consent form", "DOC"),
    ("O'NEILL^MARY", "DEMO004", "20010217", "F", "A1004", "Wound photo", "XC"),
    ("Yamada^Tarou=山田^太郎", "DEMO005", "19660730", "M", "A1005", "Endoscopy video", "ES"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def demo_worklist(station_aet: str = KIOSK_AET, today: dt.date | None = None) -> list[Any]:
    """The demo worklist items (pydicom Datasets, UTF-8), scheduled for ``today``."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    day = (today or dt.date.today()).strftime("%Y%m%d")
    items = []
    for hour, (name, pid, birth, sex, accession, procedure, modality) in enumerate(DEMO_PATIENTS, start=8):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = name, pid, "DEMO"
        ds.PatientBirthDate, ds.PatientSex = birth, sex
        ds.AccessionNumber = accession
        ds.ReferringPhysicianName = "WELBY^MARCUS"
        ds.StudyInstanceUID = generate_uid()
        ds.RequestedProcedureID = f"RP{accession}"
        ds.RequestedProcedureDescription = procedure
        step = Dataset()
        step.ScheduledStationAETitle = station_aet
        step.ScheduledProcedureStepStartDate = day
        step.ScheduledProcedureStepStartTime = f"{hour:02d}0000"
        step.Modality = modality
        step.ScheduledPerformingPhysicianName = ""
        step.ScheduledProcedureStepDescription = procedure
        step.ScheduledProcedureStepID = f"SPS{accession}"
        ds.ScheduledProcedureStepSequence = [step]
        items.append(ds)
    return items


def _matches(value: Any, wanted: Any) -> bool:
    """DICOM C-FIND matching, enough for a demo: empty = any, * and ? wildcards, date ranges."""
    wanted = "" if wanted is None else str(wanted)
    if wanted in ("", "*"):
        return True
    value = "" if value is None else str(value)
    if "-" in wanted and wanted.replace("-", "").isdigit():
        low, _, high = wanted.partition("-")
        return (not low or value >= low) and (not high or value <= high)
    if "*" in wanted or "?" in wanted:
        return fnmatch.fnmatchcase(value.upper(), wanted.upper())
    return value == wanted


def _item_matches(item: Any, query: Any) -> bool:
    for keyword in ("PatientName", "PatientID", "AccessionNumber", "PatientBirthDate", "PatientSex",
                    "ReferringPhysicianName", "RequestedProcedureDescription", "StudyInstanceUID"):
        if keyword in query and not _matches(item.get(keyword), query.get(keyword)):
            return False
    steps = query.get("ScheduledProcedureStepSequence")
    if steps:
        wanted, have = steps[0], item.ScheduledProcedureStepSequence[0]
        for keyword in ("ScheduledStationAETitle", "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime",
                        "Modality"):
            if keyword in wanted and not _matches(have.get(keyword), wanted.get(keyword)):
                return False
    return True


def _response(item: Any, query: Any) -> Any:
    """The item reduced to the keys asked for (plus the character set)."""
    from pydicom.dataset import Dataset

    out = Dataset()
    out.SpecificCharacterSet = item.SpecificCharacterSet
    for element in query:
        if element.keyword == "ScheduledProcedureStepSequence":
            out.ScheduledProcedureStepSequence = item.ScheduledProcedureStepSequence
        elif element.keyword and element.keyword != "SpecificCharacterSet":
            empty = [] if element.VR == "SQ" else ""
            setattr(out, element.keyword, item.get(element.keyword, empty))
    return out


@dataclass
class DemoPeers:
    """The running demo PACS and worklist; ``stop()`` ends them."""

    received: Path
    pacs_port: int
    worklist_port: int
    kiosk_port: int
    items: list[Any] = field(default_factory=list)
    stored: dict[str, Path] = field(default_factory=dict)
    headers: list[Any] = field(default_factory=list)  # what C-FIND on the PACS looks at: one per instance
    steps: dict[str, Any] = field(default_factory=dict)  # MPPS SOP Instance UID -> the step as it stands
    _servers: list[Any] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def pacs_url(self) -> str:
        return f"{PACS_AET}@{HOST}:{self.pacs_port}"

    @property
    def worklist_url(self) -> str:
        return f"{WORKLIST_AET}@{HOST}:{self.worklist_port}"

    def config(self, base: Config | None = None) -> Config:
        """A configuration for the kiosk pointing at the demo peers (keeps ``base``'s other sections)."""
        base = base or Config()
        pacs = NodeConfig("demo-pacs", PACS_AET, HOST, self.pacs_port, storage_commitment=True,
                          connect_timeout=5.0, acse_timeout=10.0, dimse_timeout=30.0, network_timeout=30.0)
        worklist = NodeConfig("worklist", WORKLIST_AET, HOST, self.worklist_port, station_ae_title=KIOSK_AET,
                              connect_timeout=5.0, acse_timeout=10.0, dimse_timeout=30.0, network_timeout=30.0)
        local = LocalConfig(ae_title=KIOSK_AET, port=self.kiosk_port, station_name="DEMO", institution_name="Demo Clinic")
        ui = replace(base.ui, admin_pin=base.ui.admin_pin or DEMO_PIN)
        query = NodeConfig("query", PACS_AET, HOST, self.pacs_port, connect_timeout=5.0, acse_timeout=10.0,
                           dimse_timeout=30.0, network_timeout=30.0)
        mpps = NodeConfig("mpps", WORKLIST_AET, HOST, self.worklist_port, connect_timeout=5.0, acse_timeout=10.0,
                          dimse_timeout=30.0, network_timeout=30.0)
        return replace(base, local=local, destinations={"demo-pacs": pacs}, worklist=worklist, query=query, path=None,
                       ui=ui, mpps=mpps)

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
        self._servers.clear()

    # -- handlers --------------------------------------------------------
    def _on_store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        uid = ds.SOPInstanceUID
        path = self.received / f"{uid}.dcm"
        ds.save_as(path, enforce_file_format=True)
        with self._lock:
            self.stored[uid] = path
            self.headers.append(_header(ds))
        log.info("demo PACS stored %s", uid)
        return 0x0000

    def _on_find(self, event: Any):
        query = event.identifier
        for item in self.items:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            if _item_matches(item, query):
                yield 0xFF00, _response(item, query)

    def _on_study_find(self, event: Any):
        """Study Root C-FIND, STUDY, SERIES or IMAGE level: one answer per study (series, instance) among
        the headers."""
        query = event.identifier
        level = str(query.get("QueryRetrieveLevel", "STUDY")).upper()
        key = _LEVEL_KEYS.get(level, "StudyInstanceUID")
        with self._lock:
            headers = list(self.headers)
        answered = set()
        for header in headers:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            if header.get(key) in answered or header.get(key) is None or not all(
                    _matches(header.get(e.keyword), e.value) for e in query
                    if e.keyword not in ("QueryRetrieveLevel", "SpecificCharacterSet") and e.VR != "SQ"):
                continue
            answered.add(header.get(key))
            answer = _response(header, query)
            answer.QueryRetrieveLevel = level
            yield 0xFF00, answer

    def _on_mpps(self, event: Any):
        """N-CREATE / N-SET of a performed procedure step (the RIS learns what was done)."""
        from pynetdicom import evt

        if event.event is evt.EVT_N_CREATE:
            uid, ds = str(event.request.AffectedSOPInstanceUID), event.attribute_list
            with self._lock:
                if uid in self.steps:
                    return 0x0111, None
                self.steps[uid] = ds
            log.info("demo RIS: step %s IN PROGRESS", ds.get("PerformedProcedureStepID", ""))
            return 0x0000, ds
        uid, ds = str(event.request.RequestedSOPInstanceUID), event.modification_list
        with self._lock:
            step = self.steps.get(uid)
            if step is None:
                return 0x0112, None
            if step.PerformedProcedureStepStatus != "IN PROGRESS":
                return 0xC310, None
            for element in ds:
                step[element.tag] = element
        log.info("demo RIS: step %s %s", step.get("PerformedProcedureStepID", ""), step.PerformedProcedureStepStatus)
        return 0x0000, ds

    def _on_commit(self, event: Any):
        request = event.action_information
        caller = event.assoc.requestor.ae_title
        host = event.assoc.requestor.address
        transaction = request.TransactionUID
        references = list(request.get("ReferencedSOPSequence", []))
        # Like real archives: answer now, report later on a new association.
        threading.Thread(target=self._report, args=(caller, host, transaction, references), daemon=True).start()
        return 0x0000, None

    def _report(self, caller: str, host: str, transaction: str, references: list[Any]) -> None:
        from pydicom.dataset import Dataset
        from pynetdicom import AE
        from pynetdicom.sop_class import StorageCommitmentPushModel

        time.sleep(0.2)
        report = Dataset()
        report.TransactionUID = transaction
        done, failed = [], []
        with self._lock:
            for ref in references:
                entry = Dataset()
                entry.ReferencedSOPClassUID = ref.ReferencedSOPClassUID
                entry.ReferencedSOPInstanceUID = ref.ReferencedSOPInstanceUID
                if ref.ReferencedSOPInstanceUID in self.stored:
                    done.append(entry)
                else:
                    entry.FailureReason = 0x0112  # no such object instance
                    failed.append(entry)
        if done:
            report.ReferencedSOPSequence = done
        if failed:
            report.FailedSOPSequence = failed
        ae = AE(ae_title=PACS_AET)
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate(host, self.kiosk_port, ae_title=caller)
        if not assoc.is_established:
            log.warning("demo PACS could not deliver the storage commitment report to %s@%s:%s",
                        caller, host, self.kiosk_port)
            return
        try:
            assoc.send_n_event_report(report, 2 if failed else 1, StorageCommitmentPushModel,
                                      "1.2.840.10008.1.20.1.1")
        finally:
            assoc.release()


_HEADER_KEYS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "StudyDescription", "ReferringPhysicianName",
                "SeriesInstanceUID", "SeriesNumber", "SeriesDate", "SeriesTime", "SeriesDescription", "Modality",
                "BodyPartExamined", "SOPInstanceUID", "SOPClassUID", "InstanceNumber")
_LEVEL_KEYS = {"STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}


def _header(ds: Any) -> Any:
    """The attributes C-FIND matches and answers with, of one stored instance."""
    from pydicom.dataset import Dataset

    header = Dataset()
    header.SpecificCharacterSet = ds.get("SpecificCharacterSet", "ISO_IR 192")
    for keyword in _HEADER_KEYS:
        if keyword in ds:
            setattr(header, keyword, ds[keyword].value)
    header.ModalitiesInStudy = header.get("Modality", "")
    return header


def prior_study(patient: tuple = DEMO_PATIENTS[1]) -> list[Any]:
    """A study the demo PACS already holds for one patient: two series (1, 2) of outside films."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    name, pid, birth, sex, *_ = patient
    study = generate_uid()
    headers = []
    for number, description in ((1, "Chest PA"), (2, "Chest lateral")):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName, ds.PatientID, ds.IssuerOfPatientID, ds.PatientBirthDate, ds.PatientSex = name, pid, "DEMO", birth, sex
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study, "20250314", "093000", "PRIOR1"
        ds.AccessionNumber, ds.StudyDescription, ds.ReferringPhysicianName = "P0001", "Chest X-ray (outside)", "WELBY^MARCUS"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription, ds.Modality = generate_uid(), number, description, "CR"
        headers.append(_header(ds))
    return headers


def demo_disc(mount_point: Path, patient: tuple = DEMO_PATIENTS[0]) -> Path:
    """A CD from another hospital in ``mount_point`` (the demo's ``[media] mount_points``): the demo patient
    under that hospital's own Patient ID, two CT images and a report page, with a DICOMDIR."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    from kiosk.media.pdi import write_file_set
    from kiosk.media.profiles import PROFILES
    from kiosk.part10 import set_file_meta

    name, _, birth, sex, *_ = patient
    disc, made = Path(mount_point) / "OUTSIDE_CD", Path(tempfile.mkdtemp(prefix="kiosk-demo-disc-"))
    disc.mkdir(parents=True, exist_ok=True)
    study, ramp = generate_uid(), np.add.outer(np.arange(128), np.arange(128)).astype(np.uint16)
    series, frame = {"CT": (generate_uid(), 1), "OT": (generate_uid(), 2)}, generate_uid()
    files = []
    for number, (sop_class, modality, description, pixels) in enumerate((
            (CTImageStorage, "CT", "Head axial", ramp * 16), (CTImageStorage, "CT", "Head axial", ramp[::-1] * 16),
            (SecondaryCaptureImageStorage, "OT", "Report", (ramp % 64 * 4).astype(np.uint8))), start=1):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
        ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = name, "EXT-4711", "ST. ELSEWHERE"
        ds.PatientBirthDate, ds.PatientSex = birth, sex
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study, "20240611", "101500", "E1"
        ds.AccessionNumber, ds.StudyDescription, ds.InstitutionName = "EXT-88", "CT head (outside)", "St. Elsewhere"
        ds.ReferringPhysicianName = ""
        ds.SeriesInstanceUID, ds.SeriesNumber = series[modality]
        ds.Modality, ds.SeriesDescription, ds.InstanceNumber = modality, description, number
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Rows, ds.Columns = 1, "MONOCHROME2", 128, 128
        ds.BitsAllocated = ds.BitsStored = 8 * pixels.itemsize
        ds.HighBit, ds.PixelRepresentation, ds.PixelData = ds.BitsStored - 1, 0, pixels.tobytes()
        if modality == "CT":
            ds.ImageType, ds.RescaleIntercept, ds.RescaleSlope = ["ORIGINAL", "PRIMARY", "AXIAL"], -1024, 1
            ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame, ""
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        set_file_meta(ds)
        files.append(made / f"{number}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    try:
        write_file_set(disc, files, PROFILES["STD-GEN-CD"], web_content=False, label="ST ELSEWHERE")
    finally:
        for path in files:
            path.unlink()
        made.rmdir()
    return disc


def start_demo_peers(folder: Path | None = None, kiosk_port: int | None = None) -> DemoPeers:
    """Start the demo PACS and worklist on loopback; received objects go to ``folder`` (temp by default)."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import (ModalityPerformedProcedureStep, ModalityWorklistInformationFind,
                                      StorageCommitmentPushModel, StudyRootQueryRetrieveInformationModelFind,
                                      Verification)

    received = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="kiosk-demo-pacs-"))
    received.mkdir(parents=True, exist_ok=True)
    peers = DemoPeers(received, free_port(), free_port(), kiosk_port or free_port(), demo_worklist(),
                      headers=prior_study())

    pacs = AE(ae_title=PACS_AET)
    for context in AllStoragePresentationContexts:
        pacs.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    pacs.add_supported_context(Verification)
    pacs.add_supported_context(StorageCommitmentPushModel)
    pacs.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    pacs.maximum_pdu_size = 0
    peers._servers.append(pacs.start_server(
        (HOST, peers.pacs_port), block=False,
        evt_handlers=[(evt.EVT_C_STORE, peers._on_store), (evt.EVT_N_ACTION, peers._on_commit),
                      (evt.EVT_C_FIND, peers._on_study_find)]))

    worklist = AE(ae_title=WORKLIST_AET)
    worklist.add_supported_context(ModalityWorklistInformationFind)
    worklist.add_supported_context(ModalityPerformedProcedureStep)
    worklist.add_supported_context(Verification)
    peers._servers.append(worklist.start_server(
        (HOST, peers.worklist_port), block=False,
        evt_handlers=[(evt.EVT_C_FIND, peers._on_find), (evt.EVT_N_CREATE, peers._on_mpps),
                      (evt.EVT_N_SET, peers._on_mpps)]))
    return peers
