"""Import reconciliation (IHE RAD IRWF.b): a medium's object put under the local patient."""

from __future__ import annotations

import datetime as dt

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.sequence import Sequence
from tests.support.foreign_media import ACCESSION, FOREIGN, INSTITUTION, make_medium

from kiosk.media.reader import read_medium
from kiosk.media.reconcile import UidMap, compare, reconcile
from kiosk.outbox.core import encode
from kiosk.study import StudyContext

WHEN = dt.datetime(2026, 3, 4, 10, 30, 0, tzinfo=dt.timezone.utc)
LOCAL = StudyContext.manual(patient_name="Local^Anna", patient_id="L-1", issuer="KIOSKHOSP", birth_date="19600203",
                            sex="F")


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    root = tmp_path_factory.mktemp("cd")
    make_medium(root, studies=1, series=2, per_series=1, dicomdir=False)
    return root, read_medium(root)


def _object(medium) -> Dataset:
    root, med = medium
    return dcmread(med.chosen()[0][2].instances[0].path)


def _modified(ds: Dataset, index: int = -1) -> Dataset:
    item = ds.OriginalAttributesSequence[index]
    assert item.ReasonForTheAttributeModification == "COERCE"
    return item.ModifiedAttributesSequence[0]


def _roundtrip(ds: Dataset) -> Dataset:
    return dcmread(DicomBytesIO(encode(ds).data))


def test_the_local_patient_replaces_the_foreign_one_and_every_old_value_is_kept(medium):
    ds = _object(medium)
    sop = (ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID)
    out = _roundtrip(reconcile(ds, LOCAL, scheduled=False, uid_map=None, when=WHEN))

    assert (out.PatientName, out.PatientID, out.IssuerOfPatientID, out.PatientSex) == \
        ("Local^Anna", "L-1", "KIOSKHOSP", "F")
    assert (out.SOPClassUID, out.SOPInstanceUID, out.StudyInstanceUID, out.SeriesInstanceUID) == sop
    old = _modified(out)
    # Every changed attribute with its old value; the birth date was the same and is not listed.
    assert str(old.PatientName) == FOREIGN["PatientName"] and old.PatientID == FOREIGN["PatientID"]
    assert old.IssuerOfPatientID == FOREIGN["IssuerOfPatientID"] and old.PatientSex == "M"
    assert "PatientBirthDate" not in old and old.AccessionNumber == ACCESSION
    assert old.RequestAttributesSequence[0].RequestedProcedureID == "FRP1"
    assert "OtherPatientIDsSequence" in old and len(old.OtherPatientIDsSequence) == 0  # absent before
    item = out.OriginalAttributesSequence[-1]
    assert item.SourceOfPreviousValues == INSTITUTION
    assert item.AttributeModificationDateTime == "20260304103000+0000"
    assert item.ModifyingSystem.startswith("kiosk ")
    # Unscheduled: no foreign order identifiers stay.
    assert out.AccessionNumber == "" and "RequestAttributesSequence" not in out
    # The foreign ID, with its issuer, is one of the patient's other IDs.
    (other,) = out.OtherPatientIDsSequence
    assert (other.PatientID, other.IssuerOfPatientID, other.TypeOfPatientID) == ("EXT-4711", "OTHERHOSP", "TEXT")
    # The rest of the object is as it was.
    assert out.ReferringPhysicianName == "Doktor^Eva" and out.StudyID == "1" and out.PixelData == ds.PixelData


def test_existing_other_ids_and_original_attributes_items_are_kept(medium):
    ds = _object(medium)
    earlier, kept = Dataset(), Dataset()
    earlier.PatientID, earlier.IssuerOfPatientID = "OLD-9", "THIRDHOSP"
    ds.OtherPatientIDsSequence = Sequence([earlier])
    kept.ReasonForTheAttributeModification, kept.ModifyingSystem = "CORRECT", "elsewhere"
    kept.AttributeModificationDateTime, kept.SourceOfPreviousValues = "20200101", ""
    kept.ModifiedAttributesSequence = Sequence([Dataset()])
    ds.OriginalAttributesSequence = Sequence([kept])
    out = _roundtrip(reconcile(ds, LOCAL, scheduled=False, when=WHEN))
    assert [i.PatientID for i in out.OtherPatientIDsSequence] == ["OLD-9", "EXT-4711"]
    assert [i.ReasonForTheAttributeModification for i in out.OriginalAttributesSequence] == ["CORRECT", "COERCE"]
    assert [i.PatientID for i in _modified(out).OtherPatientIDsSequence] == ["OLD-9"]


def test_a_scheduled_import_gets_the_worklist_items_accession_and_request_attributes(medium):
    ds = _object(medium)
    order = LOCAL.with_edits(accession="ACC-77", requested_procedure_id="RP-5", scheduled_step_id="SPS-5",
                             study_uid="1.2.3.4.5")
    out = _roundtrip(reconcile(ds, order, scheduled=True, when=WHEN))
    assert out.AccessionNumber == "ACC-77"
    (request,) = out.RequestAttributesSequence
    assert (request.RequestedProcedureID, request.ScheduledProcedureStepID, request.AccessionNumber) == \
        ("RP-5", "SPS-5", "ACC-77")
    # The order's Study Instance UID is a reference in the request; the object keeps its own.
    assert request.StudyInstanceUID == "1.2.3.4.5" and out.StudyInstanceUID != "1.2.3.4.5"
    old = _modified(out)
    assert old.AccessionNumber == ACCESSION and old.RequestAttributesSequence[0].ScheduledProcedureStepID == "FSPS1"


def test_remapped_uids_are_consistent_and_the_same_for_the_same_local_patient(medium):
    root, med = medium
    (_, _, first), (_, _, second) = med.chosen()
    one, two = dcmread(first.instances[0].path), dcmread(second.instances[0].path)
    study, series = one.StudyInstanceUID, one.SeriesInstanceUID
    ref = Dataset()
    ref.StudyInstanceUID, ref.SeriesInstanceUID = study, two.SeriesInstanceUID
    two.ReferencedSeriesSequence = Sequence([ref])
    uid_map = UidMap.for_patient(LOCAL)
    a = reconcile(one, LOCAL, scheduled=False, uid_map=uid_map, when=WHEN)
    b = reconcile(two, LOCAL, scheduled=False, uid_map=UidMap.for_patient(LOCAL), when=WHEN)
    assert a.StudyInstanceUID == b.StudyInstanceUID != study  # one study, one new UID
    assert a.SeriesInstanceUID != b.SeriesInstanceUID and series not in (a.SeriesInstanceUID, b.SeriesInstanceUID)
    assert a.StudyInstanceUID.startswith("2.25.") and len(a.StudyInstanceUID) <= 64
    assert b.ReferencedSeriesSequence[0].SeriesInstanceUID == b.SeriesInstanceUID  # references follow
    assert _modified(a).StudyInstanceUID == study and _modified(a).SeriesInstanceUID == series
    assert _modified(b).ReferencedSeriesSequence[0].StudyInstanceUID == study  # the whole old sequence
    assert a.SOPInstanceUID == first.instances[0].sop_instance_uid  # never remapped
    other = StudyContext.manual(patient_name="Other^Bob", patient_id="L-2")
    assert UidMap.for_patient(other)(study) != a.StudyInstanceUID
    assert UidMap.for_patient(LOCAL, "1.2.826.0.1.3680043.10.999")(study).startswith("1.2.826.0.1.3680043.10.999.")


@pytest.mark.parametrize("name, charset", [("Dvořák^Jiří", "ISO_IR 192"), ("Müller^Jörg", "ISO_IR 100"),
                                           ("Smith^John", "ISO_IR 100")])
def test_the_character_set_holds_the_local_name_and_the_old_values(medium, name, charset):
    ds = _object(medium)  # ISO_IR 100, with the foreign name Müller^Hans (kept in the Original Attributes)
    out = _roundtrip(reconcile(ds, LOCAL.with_edits(patient_name=name), scheduled=False, when=WHEN))
    assert out.SpecificCharacterSet == charset
    assert str(out.PatientName) == name and str(_modified(out).PatientName) == "Müller^Hans"


def test_nothing_changes_when_the_medium_already_names_the_local_patient(medium):
    ds = _object(medium)
    same = StudyContext.manual(patient_name=FOREIGN["PatientName"], patient_id=FOREIGN["PatientID"],
                               issuer=FOREIGN["IssuerOfPatientID"], birth_date=FOREIGN["PatientBirthDate"],
                               sex="M", accession=ACCESSION)
    ds.RequestAttributesSequence = Sequence()
    out = reconcile(ds, same, scheduled=False, when=WHEN)
    assert "OriginalAttributesSequence" not in out and "OtherPatientIDsSequence" not in out


def test_compare_shows_the_medium_against_the_local_patient(medium):
    root, med = medium
    patient, study = med.patients[0], med.patients[0].studies[0]
    rows = {row.label: row for row in compare(patient, study, LOCAL)}
    assert list(rows) == ["Patient Name", "Patient ID", "Issuer", "Birth Date", "Sex", "Accession"]
    assert rows["Patient ID"].medium == "EXT-4711" and rows["Patient ID"].local == "L-1" and rows["Patient ID"].differs
    assert not rows["Birth Date"].differs
