"""``kiosk import``: a patient's CD imported under the local patient, to Orthanc; ``kiosk send`` of a CD
folder leaves its DICOMDIR out."""

from __future__ import annotations

from tests.support.foreign_media import fingerprint, make_medium
from tests.support.outbox_data import received_uids
from tests.support.outbox_helpers import cli, outbox_config

from kiosk.config import to_toml


def _config_file(tmp_path, orthanc=None):
    text = to_toml(outbox_config(tmp_path))
    if orthanc is not None:
        text += f"\n[query]\nae_title = '{orthanc.aet}'\nhost = '127.0.0.1'\nport = {orthanc.port}\n"
    path = tmp_path / "kiosk.toml"
    path.write_text(text)
    return cli(path)


def test_kiosk_import_to_orthanc_names_whose_images_and_the_bad_files(tmp_path, orthanc):
    orthanc.clear()
    root = tmp_path / "cd"
    made = make_medium(root, studies=1, series=2, per_series=2)
    damaged_uid, damaged = next(iter(made.items()))
    damaged.write_bytes(damaged.read_bytes()[:-100])  # cut short after the DICOMDIR was made
    missing_uid, missing = list(made.items())[1]
    missing.unlink()  # the DICOMDIR lists it, it is not there
    before = fingerprint(root)
    kiosk = _config_file(tmp_path, orthanc)
    args = ["import", str(root), "--to", f"ORTHANC@127.0.0.1:{orthanc.port}", "--wait", "--patient-id", "CLI-1",
            "--patient-name", "Local^Carla", "--issuer", "KIOSKHOSP", "--sex", "F"]
    out = kiosk(*args, check=1).stdout  # the damaged and the missing file could not be imported
    assert "medium:  Müller^Hans, ID EXT-4711 (OTHERHOSP), born 19600203, sex M; 1 study(ies)" in out
    assert "import as: Local^Carla, ID CLI-1 (KIOSKHOSP), sex F" in out
    assert f"FAILED   {damaged}: is cut short" in out
    assert f"FAILED   {missing}: the DICOMDIR lists this file but it is not on the medium" in out
    assert "imported 2 instance(s), skipped 0, failed 2" in out and "2 of 2 job(s) delivered" in out
    tags = [orthanc.tags(i) for i in orthanc.instances()]
    assert sorted(t["SOPInstanceUID"] for t in tags) == sorted(set(made) - {damaged_uid, missing_uid})
    assert {(t["PatientID"], t["PatientName"]) for t in tags} == {("CLI-1", "Local^Carla")}

    out = kiosk(*args, check=1).stdout  # again: what is on the archive is skipped, the bad files named again
    assert "imported 0 instance(s), skipped 2, failed 2" in out and out.count("already on the archive") == 2
    assert fingerprint(root) == before


def test_kiosk_import_asks_whose_images_they_are(tmp_path):
    root = tmp_path / "cd"
    make_medium(root, per_series=1, series=1, dicomdir=False)
    result = _config_file(tmp_path)("import", str(root), "--to", "X@127.0.0.1:104", check=2)
    assert "whose images are these?" in result.stderr


def test_kiosk_send_of_a_cd_folder_leaves_the_dicomdir_out(tmp_path, storescp):
    root = tmp_path / "cd"
    made = make_medium(root, studies=1, series=1, per_series=2)
    captured = _config_file(tmp_path)("send", str(root), "--to", storescp.url, "--wait")
    assert f"note: {root / 'DICOMDIR'} is a DICOMDIR" in captured.stderr and "2 of 2 job(s) delivered" in captured.stdout
    assert sorted(received_uids(storescp.extra["received"])) == sorted(made)
