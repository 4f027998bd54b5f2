"""The peer fixtures work end to end with real tools (and so can catch real faults)."""

from __future__ import annotations

import subprocess

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

from tests.support.peers import require_binary


def echo(peer) -> int:
    ae = AE(ae_title="KIOSK")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", peer.port, ae_title=peer.aet)
    assert assoc.is_established, f"association to {peer.url} failed"
    status = assoc.send_c_echo()
    assoc.release()
    return status.Status


def worklist_names(peer) -> list[str]:
    ae = AE(ae_title="KIOSK")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", peer.port, ae_title=peer.aet)
    assert assoc.is_established
    query = Dataset()
    query.SpecificCharacterSet = "ISO_IR 192"
    query.PatientName = ""
    query.PatientID = ""
    step = Dataset()
    step.ScheduledStationAETitle = "KIOSK"
    step.ScheduledProcedureStepStartDate = ""
    step.Modality = ""
    query.ScheduledProcedureStepSequence = [step]
    names = []
    for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
        if status and status.Status in (0xFF00, 0xFF01):
            names.append(str(identifier.PatientName))
    assoc.release()
    return sorted(names)


def test_echo_storescp(storescp):
    assert echo(storescp) == 0x0000


def test_echo_orthanc(orthanc):
    assert echo(orthanc) == 0x0000


def test_worklist_wlmscpfs_returns_fixture_items(wlmscpfs, worklist_items):
    expected = sorted(str(item.PatientName) for item in worklist_items)
    assert worklist_names(wlmscpfs) == expected


def test_worklist_orthanc_returns_fixture_items(orthanc, worklist_items):
    expected = sorted(str(item.PatientName) for item in worklist_items)
    assert worklist_names(orthanc) == expected


def test_dciodvfy_passes_valid_and_fails_invalid(tmp_path, dciodvfy):
    require_binary("img2dcm")
    from PIL import Image

    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(jpeg, quality=90)
    valid = tmp_path / "valid.dcm"
    subprocess.run(["img2dcm", "-k", "PatientName=TEST^VALID", "-k", "PatientID=1", "-k", "ImageLaterality=U", str(jpeg), str(valid)], check=True)
    output = dciodvfy(valid)
    assert "Secondary Capture" in output or "SC" in output

    import pydicom

    ds = pydicom.dcmread(valid)
    del ds.SOPClassUID
    del ds.StudyInstanceUID
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    with pytest.raises(pytest.fail.Exception, match="dciodvfy found"):
        dciodvfy(broken)
