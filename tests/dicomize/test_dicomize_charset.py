"""Non-ASCII names round-trip: through our files and through Orthanc (C-STORE, then REST)."""

from __future__ import annotations

import pydicom
import pytest

from tests.support.dicomize_helpers import capture_of
from kiosk.dicomize import BuildOptions, build_datasets, write_dataset
from kiosk.study import StudyContext

# (label, patient name, study description, charset of the source, expected Specific Character Set)
NAMES = [
    ("ascii", "DOE^JOHN", "Chest", "", None),
    ("german", "Müller^Jürgen", "Röntgen Thorax", "", "ISO_IR 100"),
    ("greek", "Παπαδόπουλος^Νίκος", "Ακτινογραφία", "", "ISO_IR 192"),
    ("russian", "Иванов^Иван", "Рентген", "", "ISO_IR 192"),
    ("chinese", "王^小明", "胸部X光", "", "ISO_IR 192"),
    ("japanese", "Yamada^Tarou=山田^太郎=やまだ^たろう", "", ["", "ISO 2022 IR 87"], ["", "ISO 2022 IR 87"]),
    ("japanese-utf8", "Yamada^Tarou=山田^太郎=やまだ^たろう", "胸部", "", "ISO_IR 192"),
]


def _datasets(name, description, charset):
    study = StudyContext(patient_name=name, patient_id="PID-CS", study_description=description, charset=charset)
    study.validate()
    return build_datasets([capture_of("gray8")], study, BuildOptions(transfer_syntax="explicit"))


@pytest.mark.parametrize("label,name,description,charset,expected", NAMES, ids=[n[0] for n in NAMES])
def test_names_round_trip_through_files(tmp_path, dciodvfy, label, name, description, charset, expected):
    [ds] = _datasets(name, description, charset)
    path = write_dataset(ds, tmp_path / f"{label}.dcm")
    dciodvfy(path)
    back = pydicom.dcmread(path)
    assert back.get("SpecificCharacterSet") == expected
    assert str(back.PatientName) == name
    if description:
        assert back.StudyDescription == description


def test_a_worklist_charset_that_cannot_hold_a_value_is_not_used():
    study = StudyContext(patient_name="Müller^Jürgen", patient_id="1", charset=["", "ISO 2022 IR 87"])
    [ds] = build_datasets([capture_of("gray8")], study)
    assert ds.SpecificCharacterSet == "ISO_IR 100"


def test_names_round_trip_through_orthanc(orthanc, tmp_path):
    from pynetdicom import AE
    from pynetdicom.sop_class import SecondaryCaptureImageStorage

    stored = []
    ae = AE(ae_title="KIOSK")
    ae.add_requested_context(SecondaryCaptureImageStorage, pydicom.uid.ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", orthanc.port, ae_title=orthanc.aet)
    assert assoc.is_established
    try:
        for label, name, description, charset, _ in NAMES:
            [ds] = _datasets(name, description, charset)
            path = write_dataset(ds, tmp_path / f"{label}.dcm")
            status = assoc.send_c_store(pydicom.dcmread(path))
            assert status.Status == 0, f"{label}: C-STORE status {status.Status:#06x}"
            stored.append((label, name, description, ds.SOPInstanceUID))
    finally:
        assoc.release()
    for label, name, description, uid in stored:
        [found] = orthanc.rest("/tools/lookup", method="POST", body=uid.encode())
        tags = orthanc.tags(found["ID"])
        assert tags["PatientName"] == name, label
        if description:
            assert tags["StudyDescription"] == description, label


def _as_received(ds):
    """``ds`` written and read back as a C-FIND response is (implicit VR, elements not yet decoded)."""
    from io import BytesIO

    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)
    return read_dataset(BytesIO(fp.getvalue()), True, True)


def test_utf8_bytes_declared_latin1_are_found_with_both_readings():
    from kiosk.dicomize.charset import misreadings, read_as_utf8
    from tests.support.worklist_data import as_latin1, make_worklist_item

    item = make_worklist_item(as_latin1("ŠIMKOVÁ^ANNA"), charset="ISO_IR 100", procedure=as_latin1("Rentgen hrudníku"))
    item.ScheduledProcedureStepSequence[0].ScheduledProcedureStepDescription = as_latin1("Kontrola")  # ASCII: no doubt
    received = _as_received(item)
    found = {(m.keyword, m.declared, m.utf8) for m in misreadings(received)}
    assert found == {("PatientName", "Å\xa0IMKOVÃ\x81^ANNA", "ŠIMKOVÁ^ANNA"),
                     ("RequestedProcedureDescription", "Rentgen hrudnÃ\xadku", "Rentgen hrudníku")}
    utf8 = read_as_utf8(received)
    assert utf8.SpecificCharacterSet == "ISO_IR 192" and str(utf8.PatientName) == "ŠIMKOVÁ^ANNA"
    assert utf8.RequestedProcedureDescription == "Rentgen hrudníku" and misreadings(utf8) == []
    assert str(utf8.ReferringPhysicianName) == "HOUSE^GREGORY"
    context = StudyContext.from_worklist(received).with_reading(StudyContext.from_worklist(utf8))
    assert context.misread == {"patient_name": "ŠIMKOVÁ^ANNA", "study_description": "Rentgen hrudníku",
                               "requested_procedure_description": "Rentgen hrudníku"}
    assert any(p.startswith("character set: patient name") for p in context.problems())
    assert context.as_utf8().patient_name == "ŠIMKOVÁ^ANNA" and not context.as_utf8().problems()
    assert context.as_declared().patient_name == "Å\xa0IMKOVÃ\x81^ANNA" and not context.as_declared().misread


@pytest.mark.parametrize("name, charset", [("MÜLLER^JÜRGEN", "ISO_IR 100"), ("ŠIMKOVÁ^ANNA", "ISO_IR 192"),
                                           ("DOE^JANE", "ISO_IR 100"), ("Ã^ANNA", "ISO_IR 192")])
def test_real_latin1_and_declared_utf8_are_not_in_doubt(name, charset):
    from kiosk.dicomize.charset import misreadings
    from tests.support.worklist_data import make_worklist_item

    assert misreadings(_as_received(make_worklist_item(name, charset=charset))) == []
