"""``kiosk import``: a patient's CD imported under the local patient, to Orthanc; ``kiosk send`` of a CD
folder leaves its DICOMDIR out."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
from tests.support.foreign_media import fingerprint, make_medium, medium_of
from tests.support.outbox_data import received_uids
from tests.support.outbox_helpers import outbox_config

from kiosk.cli import main
from kiosk.config import to_toml


@pytest.fixture
def reader(monkeypatch):
    """kiosk.media.reader, or until it lands on this branch a stand-in reading the files' headers."""
    if importlib.util.find_spec("kiosk.media.reader") is None:
        stand_in = types.ModuleType("kiosk.media.reader")
        stand_in.read_medium = lambda root, cancel=None, progress=None: medium_of(root)
        monkeypatch.setitem(sys.modules, "kiosk.media.reader", stand_in)


def _config_file(tmp_path, orthanc=None):
    text = to_toml(outbox_config(tmp_path))
    if orthanc is not None:
        text += f"\n[query]\nae_title = '{orthanc.aet}'\nhost = '127.0.0.1'\nport = {orthanc.port}\n"
    path = tmp_path / "kiosk.toml"
    path.write_text(text)
    return str(path)


def test_kiosk_import_to_orthanc_names_whose_images_and_the_bad_files(tmp_path, orthanc, reader, capsys):
    orthanc.clear()
    root = tmp_path / "cd"
    made = make_medium(root, studies=1, series=2, per_series=2)
    damaged_uid, damaged = next(iter(made.items()))
    damaged.write_bytes(damaged.read_bytes()[:-100])  # cut short after the DICOMDIR was made
    before = fingerprint(root)
    config = _config_file(tmp_path, orthanc)
    to = f"ORTHANC@127.0.0.1:{orthanc.port}"
    args = ["--config", config, "import", str(root), "--to", to, "--wait", "--patient-id", "CLI-1",
            "--patient-name", "Local^Carla", "--issuer", "KIOSKHOSP", "--sex", "F"]
    assert main(args) == 1  # the damaged file could not be imported
    out = capsys.readouterr().out
    assert "medium:  Müller^Hans, ID EXT-4711 (OTHERHOSP), born 19600203, sex M; 1 study(ies)" in out
    assert "import as: Local^Carla, ID CLI-1 (KIOSKHOSP), sex F" in out
    assert f"FAILED   {damaged}: " in out
    assert "imported 3 instance(s), skipped 0, failed 1" in out and "3 of 3 job(s) delivered" in out
    tags = [orthanc.tags(i) for i in orthanc.instances()]
    assert sorted(t["SOPInstanceUID"] for t in tags) == sorted(set(made) - {damaged_uid})
    assert {(t["PatientID"], t["PatientName"]) for t in tags} == {("CLI-1", "Local^Carla")}

    assert main(args) == 1  # again: what is on the archive is skipped, the damaged file named again
    out = capsys.readouterr().out
    assert "imported 0 instance(s), skipped 3, failed 1" in out and out.count("already on the archive") == 3
    assert fingerprint(root) == before


def test_kiosk_import_asks_whose_images_they_are(tmp_path, reader, capsys):
    root = tmp_path / "cd"
    make_medium(root, per_series=1, series=1, dicomdir=False)
    assert main(["--config", _config_file(tmp_path), "import", str(root), "--to", "X@127.0.0.1:104"]) == 2
    assert "whose images are these?" in capsys.readouterr().err


def test_kiosk_send_of_a_cd_folder_leaves_the_dicomdir_out(tmp_path, storescp, capsys):
    root = tmp_path / "cd"
    made = make_medium(root, studies=1, series=1, per_series=2)
    assert main(["--config", _config_file(tmp_path), "send", str(root), "--to", storescp.url, "--wait"]) == 0
    captured = capsys.readouterr()
    assert f"note: {root / 'DICOMDIR'} is a DICOMDIR" in captured.err and "2 of 2 job(s) delivered" in captured.out
    assert sorted(received_uids(storescp.extra["received"])) == sorted(made)
