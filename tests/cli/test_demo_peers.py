"""The demo peers show the scheduled workflow with no hospital network: Find in PACS finds a prior
study (and its series), adding to it takes the next series number, and the demo RIS takes the MPPS."""

from __future__ import annotations

import json

import pytest

from kiosk.cli import main
from kiosk.config import to_toml
from kiosk.demo_peers import start_demo_peers
from kiosk.existing_study import join_study
from kiosk.study import StudyContext


@pytest.fixture
def demo_config(tmp_path):
    peers = start_demo_peers(tmp_path / "pacs")
    config = peers.config()
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(config))
    yield peers, config, path
    peers.stop()


def test_find_in_pacs_finds_the_prior_study_and_adding_to_it_takes_series_3(demo_config, capsys):
    peers, config, path = demo_config
    assert main(["--config", str(path), "query", "--server", "query", "--patient-id", "DEMO002", "--json"]) == 0
    [study] = json.loads(capsys.readouterr().out)
    assert study["00081030"]["Value"] == ["Chest X-ray (outside)"]
    uid = study["0020000D"]["Value"][0]
    assert main(["--config", str(path), "query", "--server", "query", "--level", "series", "--study-uid", uid,
                 "--json"]) == 0
    assert sorted(s["00200011"]["Value"][0] for s in json.loads(capsys.readouterr().out)) == [1, 2]
    context = StudyContext.from_pacs_study(peers.headers[0], source_ae="DEMOPACS")
    assert join_study(context, config)[1] == 3


def test_kiosk_acquire_against_the_demo_reports_the_step_to_the_demo_ris(demo_config, tmp_path, capsys):
    peers, _, path = demo_config
    (tmp_path / "item.json").write_text(json.dumps(peers.items[4].to_json_dict()), encoding="utf-8")  # ES order
    code = main(["--config", str(path), "acquire", "--source", "demo:camera", "--worklist-item",
                 str(tmp_path / "item.json"), "--send", "demo-pacs", "--wait"])
    out, err = capsys.readouterr()
    assert code == 0, err
    [step] = peers.steps.values()
    assert step.PerformedProcedureStepStatus == "COMPLETED" and step.Modality == "ES"
    assert "N-SET COMPLETED sent to mpps" in out


def test_the_demo_cd_imports_under_the_worklist_patient_and_a_second_import_skips_it(tmp_path, capsys):
    from pydicom import dcmread

    from kiosk.cli.demo import start
    from kiosk.media.reader import inserted_media

    peers, config = start(tmp_path)
    try:
        [disc] = inserted_media(config.media.mount_points)  # what the touch UI offers as Disc or USB (DICOM)
        (tmp_path / "item.json").write_text(json.dumps(peers.items[0].to_json_dict()), encoding="utf-8")
        argv = ["--config", str(config.path), "import", str(disc), "--to", "demo-pacs",
                "--worklist-item", str(tmp_path / "item.json"), "--wait"]
        assert main(argv) == 0, capsys.readouterr().err
        stored = [dcmread(p) for p in peers.stored.values()]
        assert len(stored) == 3 and {(d.PatientID, d.AccessionNumber) for d in stored} == {("DEMO001", "A1001")}
        assert {o.PatientID for d in stored for o in d.OtherPatientIDsSequence} == {"EXT-4711"}
        capsys.readouterr()
        assert main(argv) == 0  # the demo PACS answers the IMAGE level query: nothing is sent twice
        assert "imported 0 instance(s), skipped 3, failed 0" in capsys.readouterr().out and len(peers.stored) == 3
    finally:
        peers.stop()
