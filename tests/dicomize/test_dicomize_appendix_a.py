"""IHE RAD TF-2 Appendix A, golden: a worklist item holding every attribute the mapping takes, served by
Orthanc's worklist plugin and found by the kiosk's own query, becomes SC, multi-frame SC and Encapsulated
PDF objects that carry each attribute where Appendix A puts it, with no dciodvfy error.

(DCMTK wlmscpfs answers only the return keys it knows and drops the issuer qualifiers, other patient
IDs, patient's age and issuer of accession number; Orthanc's plugin answers everything asked for.)
"""

from __future__ import annotations

import datetime as dt

import pydicom
import pytest
from pydicom.dataset import Dataset

from kiosk.capture import Capture, EncodedFormat, SourceKind
from kiosk.config import LocalConfig, NodeConfig
from kiosk.dicomize import BuildOptions, build_datasets, write_dataset
from kiosk.net.worklist import WorklistQuery, find_worklist
from kiosk.study import StudyContext
from tests.support.dicomize_helpers import capture_of, pdf_bytes
from tests.support.peers import start_orthanc
from tests.support.worklist_data import APPENDIX_A_VARIANTS, appendix_a_item

SPS = "ScheduledProcedureStepSequence>"
REQ = "RequestAttributesSequence>"

# (where the object carries it, where the worklist item holds it): RAD TF-2 Table A.1-1 and A.1-2.
GOLDEN = [
    ("PatientName", "PatientName"),
    ("PatientID", "PatientID"),
    ("IssuerOfPatientID", "IssuerOfPatientID"),
    ("IssuerOfPatientIDQualifiersSequence", "IssuerOfPatientIDQualifiersSequence"),
    ("OtherPatientIDsSequence", "OtherPatientIDsSequence"),
    ("PatientBirthDate", "PatientBirthDate"),
    ("PatientSex", "PatientSex"),
    ("PatientAge", "PatientAge"),
    ("PatientWeight", "PatientWeight"),
    ("PatientSize", "PatientSize"),
    ("AdmissionID", "AdmissionID"),
    ("StudyInstanceUID", "StudyInstanceUID"),
    ("AccessionNumber", "AccessionNumber"),
    ("IssuerOfAccessionNumberSequence", "IssuerOfAccessionNumberSequence"),
    ("ReferringPhysicianName", "ReferringPhysicianName"),
    ("StudyDescription", "RequestedProcedureDescription"),
    ("ProcedureCodeSequence", "RequestedProcedureCodeSequence"),
    ("ReferencedStudySequence", "ReferencedStudySequence"),
    ("StudyID", "StudyID"),
    (REQ + "StudyInstanceUID", "StudyInstanceUID"),
    (REQ + "AccessionNumber", "AccessionNumber"),
    (REQ + "IssuerOfAccessionNumberSequence", "IssuerOfAccessionNumberSequence"),
    (REQ + "RequestedProcedureID", "RequestedProcedureID"),
    (REQ + "RequestedProcedureDescription", "RequestedProcedureDescription"),
    (REQ + "RequestedProcedureCodeSequence", "RequestedProcedureCodeSequence"),
    (REQ + "ScheduledProcedureStepID", SPS + "ScheduledProcedureStepID"),
    (REQ + "ScheduledProcedureStepDescription", SPS + "ScheduledProcedureStepDescription"),
    (REQ + "ScheduledProtocolCodeSequence", SPS + "ScheduledProtocolCodeSequence"),
    ("PerformedProcedureStepDescription", SPS + "ScheduledProcedureStepDescription"),
    ("PerformedProtocolCodeSequence", SPS + "ScheduledProtocolCodeSequence"),
]


def at(ds: Dataset, path: str):
    """The value at ``path`` ("Keyword" or "Sequence>Keyword", first item): text, or a sequence's items as JSON."""
    *outer, keyword = path.split(">")
    for sequence in outer:
        ds = ds[sequence].value[0]
    element = ds[keyword]
    if element.VR == "SQ":
        return [item.to_json_dict() for item in element.value]
    return str(element.value)


@pytest.fixture(scope="module")
def worklist_items(tmp_path_factory):
    """The Appendix A items (one per character set and modality) as the kiosk's own worklist query gets
    them from Orthanc, by patient ID."""
    from tests.support.netns import need_isolation

    need_isolation()
    items = [appendix_a_item(charset, modality, name, index)
             for index, (name, charset, modality) in enumerate(APPENDIX_A_VARIANTS, start=1)]
    peer = start_orthanc(tmp_path_factory.mktemp("orthanc-appendix-a"), items)
    try:
        node = NodeConfig(name="worklist", ae_title=peer.aet, host="127.0.0.1", port=peer.port)
        found = list(find_worklist(node, LocalConfig(), WorklistQuery(date="")))
    finally:
        peer.stop()
    assert len(found) == len(items)
    return {str(item.PatientID): item for item in found}


@pytest.fixture(params=range(1, len(APPENDIX_A_VARIANTS) + 1),
                ids=[f"{charset.strip(chr(92))}-{modality}" for _, charset, modality in APPENDIX_A_VARIANTS])
def worklist_item(worklist_items, request):
    return worklist_items[f"PIDA{request.param:02d}"]


def objects(kind: str, study: StudyContext, options: BuildOptions) -> list[Dataset]:
    if kind == "sc":
        return build_datasets([capture_of("rgb8", SourceKind.VIDEO_FRAME)], study, options)
    if kind == "multiframe":
        frames = [capture_of("rgb8", SourceKind.VIDEO_FRAME, seed=i, index=i) for i in range(3)]
        return build_datasets(frames, study, BuildOptions(**{**options.__dict__, "multiframe": True}))
    pdf = Capture(SourceKind.FILE_IMPORT, encoded=pdf_bytes(), encoded_format=EncodedFormat.PDF)
    return build_datasets([pdf], study, options)


@pytest.mark.parametrize("kind", ["sc", "multiframe", "pdf"])
def test_every_appendix_a_attribute_of_the_worklist_item_is_in_the_object(tmp_path, dciodvfy, worklist_item, kind):
    study = StudyContext.from_worklist(worklist_item, source_ae="ORTHANC")
    options = BuildOptions(institution_name="Klinikum Nord", institution_address="Hauptstrasse 1, 12345 Nordstadt",
                           department="Gastroenterologie", operators_name="KELLER^EVA")
    [ds] = objects(kind, study, options)
    path = write_dataset(ds, tmp_path / f"{kind}.dcm")
    assert "not present in standard DICOM IOD" not in dciodvfy(path)
    back = pydicom.dcmread(path)
    for in_object, in_item in GOLDEN:
        assert at(back, in_object) == at(worklist_item, in_item), f"{in_object} (from {in_item})"
    # The order's modality for images; an encapsulated document stays DOC.
    assert back.Modality == ("DOC" if kind == "pdf" else at(worklist_item, SPS + "Modality"))
    assert back.SpecificCharacterSet == worklist_item.SpecificCharacterSet
    # This session is one performed procedure step, started when the batch began.
    assert len(back.PerformedProcedureStepID) == 16
    assert back.PerformedProcedureStepStartDate == back.SeriesDate
    assert back.PerformedProcedureStepStartTime == back.SeriesTime
    assert (back.InstitutionName, back.InstitutionAddress, back.InstitutionalDepartmentName) == \
        (options.institution_name, options.institution_address, options.department)
    assert str(back.get("OperatorsName", "")) == ("" if kind == "pdf" else options.operators_name)
    if kind != "pdf":  # the General Image module's acquisition date and time: when the capture was taken
        taken = dt.datetime.strptime(back.AcquisitionDateTime[:14], "%Y%m%d%H%M%S")
        assert (back.AcquisitionDate, back.AcquisitionTime) == (taken.strftime("%Y%m%d"), taken.strftime("%H%M%S"))


def test_the_performed_step_is_one_per_batch_and_the_same_in_each_of_its_objects(worklist_item):
    study = StudyContext.from_worklist(worklist_item, source_ae="ORTHANC")
    first = build_datasets([capture_of("gray8"), capture_of("gray8", seed=1)], study)
    second = build_datasets([capture_of("gray8")], study)
    assert first[0].PerformedProcedureStepID == first[1].PerformedProcedureStepID
    assert second[0].PerformedProcedureStepID != first[0].PerformedProcedureStepID


def test_the_codes_and_modality_dcmtk_wlmscpfs_answers_reach_the_object(tmp_path, dciodvfy):
    """DCMTK's worklist server answers a subset of the keys; what it gives goes where Appendix A puts it."""
    from tests.support.netns import need_isolation
    from tests.support.peers import start_wlmscpfs

    need_isolation()
    source = appendix_a_item("ISO_IR 100", "XC", "MÜLLER^JÜRGEN")
    peer = start_wlmscpfs(tmp_path / "wlmscpfs", [source])
    try:
        node = NodeConfig(name="worklist", ae_title=peer.aet, host="127.0.0.1", port=peer.port)
        [item] = list(find_worklist(node, LocalConfig(), WorklistQuery(date="")))
    finally:
        peer.stop()
    [ds] = build_datasets([capture_of("rgb8", SourceKind.VIDEO_FRAME)], StudyContext.from_worklist(item, "WLM"))
    path = write_dataset(ds, tmp_path / "wl.dcm")
    dciodvfy(path)
    back = pydicom.dcmread(path)
    assert back.Modality == "XC" and str(back.PatientName) == "MÜLLER^JÜRGEN"
    assert at(back, "ProcedureCodeSequence") == at(source, "RequestedProcedureCodeSequence")
    assert at(back, "PerformedProtocolCodeSequence") == at(source, SPS + "ScheduledProtocolCodeSequence")
    assert (back.PatientWeight, back.PatientSize, back.AdmissionID) == (source.PatientWeight, source.PatientSize,
                                                                      source.AdmissionID)
