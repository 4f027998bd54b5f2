"""Worklist items for the peer fixtures, in any character set."""

from __future__ import annotations

import datetime as dt

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid


def make_worklist_item(
    patient_name: str = "DOE^JANE",
    patient_id: str = "PID001",
    accession: str = "ACC001",
    charset: str = "ISO_IR 100",
    station_aet: str = "KIOSK",
    modality: str = "OT",
    date: str | None = None,
    birth_date: str = "19800101",
    sex: str = "F",
    procedure: str = "Scanned documents",
    study_uid: str | None = None,
    issuer: str = "HOSPITAL",
) -> Dataset:
    """A complete Modality Worklist item (the return keys the kiosk asks for)."""
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = issuer
    ds.PatientBirthDate = birth_date
    ds.PatientSex = sex
    ds.AccessionNumber = accession
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.RequestedProcedureID = f"RP{accession}"
    ds.RequestedProcedureDescription = procedure
    ds.StudyID = f"S{accession}"[:16]
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref.ReferencedSOPInstanceUID = generate_uid()
    ds.ReferencedStudySequence = Sequence([ref])
    step = Dataset()
    step.ScheduledStationAETitle = station_aet
    step.ScheduledProcedureStepStartDate = date or dt.date.today().strftime("%Y%m%d")
    step.ScheduledProcedureStepStartTime = "090000"
    step.Modality = modality
    step.ScheduledPerformingPhysicianName = ""
    step.ScheduledProcedureStepDescription = f"{procedure} step"
    step.ScheduledProcedureStepID = f"SPS{accession}"[:16]
    step.ScheduledStationName = "FRONTDESK1"
    ds.ScheduledProcedureStepSequence = Sequence([step])
    return ds


def code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


# (patient name, character set, modality): the Appendix A items, one per script and order kind.
APPENDIX_A_VARIANTS = [("ŠIMKOVÁ^ANNA^MARIE", "ISO_IR 192", "ES"), ("MÜLLER^JÜRGEN", "ISO_IR 100", "XC"),
                       ("Yamada^Tarou=山田^太郎=やまだ^たろう", "\\ISO 2022 IR 87", "DOC"),
                       ("ΠΑΠΑΔΟΠΟΥΛΟΣ^ΝΙΚΟΣ", "ISO_IR 192", "US")]


def appendix_a_item(charset: str = "ISO_IR 192", modality: str = "ES", name: str = "ŠIMKOVÁ^ANNA^MARIE",
                    index: int = 1) -> Dataset:
    """A worklist item holding every attribute IHE RAD TF-2 Appendix A maps into the objects."""
    ds = make_worklist_item(name, f"PIDA{index:02d}", f"ACCA{index:02d}", charset, modality=modality,
                            procedure="Gastroskopie", issuer="KLINIKUM")
    qualifier = Dataset()
    qualifier.UniversalEntityID, qualifier.UniversalEntityIDType = "1.2.826.0.1.3680043.10.543.1", "ISO"
    ds.IssuerOfPatientIDQualifiersSequence = Sequence([qualifier])
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID, other.TypeOfPatientID = "NAT-4711", "NATIONAL", "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.PatientAge = "037Y"
    ds.PatientWeight = "61.5"
    ds.PatientSize = "1.68"
    ds.AdmissionID = "ADM-2026-0042"
    accession_issuer = Dataset()
    accession_issuer.LocalNamespaceEntityID = "RIS-KLINIKUM"
    ds.IssuerOfAccessionNumberSequence = Sequence([accession_issuer])
    ds.RequestedProcedureCodeSequence = Sequence([code("GAS01", "99KLINIKUM", "Ösophagogastroduodenoskopie")])
    step = ds.ScheduledProcedureStepSequence[0]
    step.ScheduledProtocolCodeSequence = Sequence([code("P-ENDO-1", "99KLINIKUM", "Standardprotokoll Endoskopie")])
    return ds


def standard_items() -> list[Dataset]:
    """Items in ISO_IR 100, ISO_IR 192 and Japanese ISO 2022 IR 87."""
    return [
        make_worklist_item("MÜLLER^JÜRGEN", "PID100", "ACC100", "ISO_IR 100"),
        make_worklist_item("ΠΑΠΑΔΟΠΟΥΛΟΣ^ΝΙΚΟΣ", "PID192", "ACC192", "ISO_IR 192", sex="M"),
        make_worklist_item("Yamada^Tarou=山田^太郎=やまだ^たろう", "PID087", "ACC087",
                           "\\ISO 2022 IR 87", sex="M"),
    ]


def as_latin1(text: str) -> str:
    """``text``'s UTF-8 bytes read as Latin-1: written under ISO_IR 100, the file holds the UTF-8 bytes."""
    return text.encode("utf-8").decode("latin-1")


def doubtful_items() -> list[Dataset]:
    """A sender that wrote UTF-8 under ISO_IR 100, a real Latin-1 item, and one with terminal controls."""
    return [
        make_worklist_item(as_latin1("ŠIMKOVÁ^ANNA"), "PID300", "ACC300", "ISO_IR 100", procedure=as_latin1("Rentgen hrudníku")),
        make_worklist_item("MÜLLER^JÜRGEN", "PID100", "ACC100", "ISO_IR 100"),
        make_worklist_item("EVIL^\x1b[2J\x1b]0;pwned\x07", "PID666", "ACC666", "ISO_IR 100",
                           procedure="Scan\r\nFAKE ROW\x1b[31m"),
    ]
