"""Worklist items (queried from DCMTK wlmscpfs) map into images per IHE RAD TF-2 Appendix A."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.support.dicomize_helpers import capture_of
from kiosk.dicomize import build_datasets, write_dataset
from kiosk.study import StudyContext, StudyError

RETURN_KEYS = ["PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
               "AccessionNumber", "ReferringPhysicianName", "StudyInstanceUID", "RequestedProcedureID",
               "RequestedProcedureDescription", "StudyID"]


def query_worklist(peer) -> list[Dataset]:
    from pynetdicom import AE
    from pynetdicom.sop_class import ModalityWorklistInformationFind

    identifier = Dataset()
    identifier.SpecificCharacterSet = "ISO_IR 192"
    for keyword in RETURN_KEYS:
        setattr(identifier, keyword, "")
    ref = Dataset()
    ref.ReferencedSOPClassUID = ""
    ref.ReferencedSOPInstanceUID = ""
    identifier.ReferencedStudySequence = Sequence([ref])
    step = Dataset()
    for keyword in ("ScheduledStationAETitle", "ScheduledProcedureStepStartDate", "Modality",
                    "ScheduledProcedureStepDescription", "ScheduledProcedureStepID"):
        setattr(step, keyword, "")
    identifier.ScheduledProcedureStepSequence = Sequence([step])
    ae = AE(ae_title="KIOSK")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", peer.port, ae_title=peer.aet)
    assert assoc.is_established
    try:
        items = [ds for status, ds in assoc.send_c_find(identifier, ModalityWorklistInformationFind)
                 if status and status.Status in (0xFF00, 0xFF01)]
    finally:
        assoc.release()
    return items


@pytest.fixture
def items(wlmscpfs):
    found = query_worklist(wlmscpfs)
    assert len(found) == 3
    return {str(ds.PatientID): ds for ds in found}


@pytest.mark.parametrize("pid", ["PID100", "PID192", "PID087"])
def test_worklist_item_maps_into_images(tmp_path, dciodvfy, items, worklist_items, pid):
    item = items[pid]
    source = next(ds for ds in worklist_items if ds.PatientID == pid)
    study = StudyContext.from_worklist(item, source_ae="WLM")
    [ds] = build_datasets([capture_of("gray8")], study)
    path = write_dataset(ds, tmp_path / "wl.dcm")
    dciodvfy(path)
    back = pydicom.dcmread(path)
    assert str(back.PatientName) == str(source.PatientName)
    assert back.PatientID == source.PatientID
    assert back.IssuerOfPatientID == source.IssuerOfPatientID
    assert back.PatientBirthDate == source.PatientBirthDate and back.PatientSex == source.PatientSex
    assert back.StudyInstanceUID == source.StudyInstanceUID
    assert back.AccessionNumber == source.AccessionNumber
    assert str(back.ReferringPhysicianName) == str(source.ReferringPhysicianName)
    assert back.StudyDescription == source.RequestedProcedureDescription
    assert back.ReferencedStudySequence[0].ReferencedSOPInstanceUID == \
        source.ReferencedStudySequence[0].ReferencedSOPInstanceUID
    request = back.RequestAttributesSequence[0]
    step = source.ScheduledProcedureStepSequence[0]
    assert request.RequestedProcedureID == source.RequestedProcedureID
    assert request.RequestedProcedureDescription == source.RequestedProcedureDescription
    assert request.ScheduledProcedureStepID == step.ScheduledProcedureStepID
    assert request.ScheduledProcedureStepDescription == step.ScheduledProcedureStepDescription
    assert request.AccessionNumber == source.AccessionNumber
    if pid == "PID087":
        assert back.SpecificCharacterSet == ["", "ISO 2022 IR 87"]  # the worklist's own set is kept
    assert "OriginalAttributesSequence" not in back


def test_typed_description_wins_and_edits_are_recorded(items):
    study = StudyContext.from_worklist(items["PID100"], source_ae="WLM")
    edited = study.with_edits(patient_name="MÜLLER^JÜRGEN^K", birth_date="1980-01-02", study_description="Typed")
    [ds] = build_datasets([capture_of("gray8")], edited)
    assert ds.StudyDescription == "Typed"
    assert ds.PatientBirthDate == "19800102"
    [item] = ds.OriginalAttributesSequence
    assert item.ReasonForTheAttributeModification == "CORRECT"
    assert item.SourceOfPreviousValues == "WLM"
    old = item.ModifiedAttributesSequence[0]
    assert str(old.PatientName) == "MÜLLER^JÜRGEN" and old.PatientBirthDate == "19800101"
    assert "PatientID" not in old  # unchanged values are not listed


def test_manual_entry_is_validated_field_by_field():
    with pytest.raises(StudyError) as info:
        StudyContext.manual(patient_name="A" * 65, patient_id="", birth_date="19801340", sex="X",
                            accession="A" * 17, study_uid="1.02.3")
    lines = info.value.message.splitlines()
    for expected in ("patient ID: is empty", "patient name: the part", "birth date: '19801340' is not a valid date",
                     "sex: 'X'", "accession number: is 17 characters", "study instance UID: '1.02.3'"):
        assert any(line.startswith(expected) for line in lines), expected
    assert len(lines) == 6


def test_manual_entry_normalises():
    study = StudyContext.manual(patient_name=" Doe^Jane ", patient_id="7", birth_date="1990-05-06", sex="f")
    assert (study.patient_name, study.birth_date, study.sex) == ("Doe^Jane", "19900506", "F")


def test_pacs_study_result_joins_that_study():
    found = Dataset()
    found.SpecificCharacterSet = "ISO_IR 192"
    found.PatientName = "Παπαδόπουλος^Νίκος"
    found.PatientID = "P9"
    found.StudyInstanceUID = "1.2.3.4.5"
    found.StudyDate, found.StudyTime = "20240301", "101500"
    found.StudyDescription = "CT HEAD"
    found.AccessionNumber = "A9"
    study = StudyContext.from_pacs_study(found, source_ae="PACS")
    [ds] = build_datasets([capture_of("rgb8")], study)
    assert (ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime) == ("1.2.3.4.5", "20240301", "101500")
    assert ds.StudyDescription == "CT HEAD" and ds.SpecificCharacterSet == "ISO_IR 192"
    edited = study.with_edits(patient_id="P10")
    [ds] = build_datasets([capture_of("rgb8")], edited)
    assert ds.OriginalAttributesSequence[0].ModifiedAttributesSequence[0].PatientID == "P9"
