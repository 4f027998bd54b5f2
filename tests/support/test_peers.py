"""The peer fixtures work end to end with real tools (and so can catch real faults)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

from tests.support import peers
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


# pynetdicom installs apps of these names next to the venv's python; DCMTK has its own of each.
PYNETDICOM_APPS = ("echoscu", "findscu", "getscu", "movescu", "storescp", "storescu")


def venv_first_on_path(monkeypatch) -> Path:
    """PATH as an activated venv has it: the venv's bin (with pynetdicom's apps) first."""
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "storescp").exists():
        pytest.skip(f"no pynetdicom storescp in {venv_bin} to stand in for DCMTK's")
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    return venv_bin


def version_of(path: str | os.PathLike[str]) -> str:
    result = subprocess.run([os.fspath(path), "--version"], capture_output=True, text=True, timeout=10)
    return result.stdout + result.stderr


def test_with_the_venv_first_on_path_the_fixture_runs_dcmtks_storescp(monkeypatch, storescp_factory):
    venv_first_on_path(monkeypatch)
    peer = storescp_factory()
    running = os.readlink(f"/proc/{peer.proc.pid}/exe")  # pynetdicom's storescp would be a python
    assert "$dcmtk: storescp" in version_of(running), running
    assert echo(peer) == 0x0000


@pytest.mark.parametrize("name", PYNETDICOM_APPS)
def test_dcmtk_tools_are_dcmtks_whatever_comes_first_on_path(monkeypatch, name):
    venv_bin = venv_first_on_path(monkeypatch)
    path = require_binary(name)
    assert Path(path).parent != venv_bin
    assert f"$dcmtk: {name}" in version_of(path)


def test_only_pynetdicoms_storescp_is_refused_with_what_to_do(monkeypatch):
    venv_bin = venv_first_on_path(monkeypatch)
    monkeypatch.setenv("PATH", str(venv_bin))
    monkeypatch.setattr(peers, "INSTALL_DIRS", ())
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception,
                       match=r"storescp at .* is not DCMTK's \(pynetdicom installs one of its own\); install DCMTK "
                             r"\(run packaging/install-deps.sh\)"):
        require_binary("storescp")
