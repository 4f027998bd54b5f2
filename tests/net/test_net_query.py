"""Study Root C-FIND against Orthanc; non-ASCII names from the worklist through the dicomizer into the PACS."""

from __future__ import annotations

import json

import pytest
from pydicom.dataset import Dataset

from kiosk.cli import main
from kiosk.config import LocalConfig, parse_node_url
from kiosk.errors import UsageError
from kiosk.net.query import StudyQuery, find_studies
from kiosk.net.store import store_files
from kiosk.net.worklist import WorklistQuery, find_worklist
from tests.support.net_data import make_sc

LOCAL = LocalConfig()


@pytest.fixture
def stored_study(orthanc, tmp_path):
    """Two series of one study of a patient of its own in Orthanc (shared by the session): (study UID, patient ID)."""
    import pydicom
    import pydicom.uid

    study = pydicom.uid.generate_uid()
    patient_id = "QRY" + study[-8:]
    files = [make_sc(tmp_path / f"q{n}.dcm", patient_name="QUERY^TEST", study_uid=study, seed=n) for n in range(2)]
    for path in files:
        ds = pydicom.dcmread(path)
        ds.PatientID = patient_id
        ds.AccessionNumber = "QACC1"
        ds.save_as(path)
    assert store_files(parse_node_url(orthanc.url), LOCAL, files).ok
    return study, patient_id


def test_study_and_series_level(orthanc, stored_study):
    stored_study, patient_id = stored_study
    node = parse_node_url(orthanc.url)
    studies = list(find_studies(node, LOCAL, StudyQuery(patient_id=patient_id)))
    assert [str(s.StudyInstanceUID) for s in studies] == [stored_study]
    assert str(studies[0].PatientName) == "QUERY^TEST" and studies[0].AccessionNumber == "QACC1"
    series = list(find_studies(node, LOCAL, StudyQuery(level="SERIES", study_uid=stored_study)))
    assert len(series) == 2 and {s.Modality for s in series} == {"OT"}
    assert list(find_studies(node, LOCAL, StudyQuery(patient_id=patient_id, date="19990101"))) == []
    assert stored_study in {str(s.StudyInstanceUID) for s in find_studies(node, LOCAL, StudyQuery(patient_name="QUERY^T*"))}


def test_series_query_needs_study():
    with pytest.raises(UsageError):
        list(find_studies(parse_node_url("X@127.0.0.1:1"), LOCAL, StudyQuery(level="SERIES")))


def test_cli_query_json(orthanc, stored_study, capsys):
    stored_study, patient_id = stored_study
    assert main(["query", "--server", orthanc.url, "--patient-id", patient_id, "--json"]) == 0
    [study] = [Dataset.from_json(d) for d in json.loads(capsys.readouterr().out)]
    assert study.StudyInstanceUID == stored_study
    assert main(["query", "--server", orthanc.url, "--level", "series", "--study-uid", stored_study]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_non_ascii_names_from_worklist_into_the_pacs(wlmscpfs, orthanc, tmp_path):
    """Worklist (three character sets) -> dicomizer -> C-STORE -> Orthanc: names arrive intact."""
    from tests.support.dicomize_helpers import capture_of
    from kiosk.dicomize import build_datasets, write_dataset
    from kiosk.study import StudyContext

    items = list(find_worklist(parse_node_url(wlmscpfs.url), LOCAL, WorklistQuery(station_aet="KIOSK")))
    assert len(items) == 3
    paths, expected = [], {}
    for item in items:
        [ds] = build_datasets([capture_of("gray8")], StudyContext.from_worklist(item, source_ae=wlmscpfs.aet))
        paths.append(write_dataset(ds, tmp_path / f"{item.PatientID}.dcm"))
        expected[str(ds.SOPInstanceUID)] = str(item.PatientName)
    assert store_files(parse_node_url(orthanc.url), LOCAL, paths).ok
    arrived = {}
    for instance in orthanc.instances():
        tags = orthanc.tags(instance)
        if tags.get("SOPInstanceUID") in expected:
            arrived[tags["SOPInstanceUID"]] = tags["PatientName"]
    assert arrived == expected
    assert "Yamada^Tarou=山田^太郎=やまだ^たろう" in arrived.values()


def test_cli_query_says_when_the_matches_are_cut(orthanc, stored_study, capsys):
    stored_study, _ = stored_study
    assert main(["query", "--server", orthanc.url, "--level", "series", "--study-uid", stored_study, "--max", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[-1].startswith("only the first 1 matches are shown: the PACS has more")
    assert main(["query", "--server", orthanc.url, "--level", "series", "--study-uid", stored_study, "--max", "2"]) == 0
    assert "only the first" not in capsys.readouterr().out


def test_find_in_pacs_for_the_screen_notes_a_cut_answer(orthanc, tmp_path):
    """The patient screen's Find in PACS stops at [query] max_results and must be able to say so."""
    import dataclasses

    import pydicom

    from kiosk.config import Config
    from kiosk.ui.services import Services

    patient_id = "CUT" + pydicom.uid.generate_uid()[-8:]
    files = [make_sc(tmp_path / f"c{n}.dcm", patient_name="CUT^TEST", seed=n) for n in range(2)]
    for path in files:
        ds = pydicom.dcmread(path)
        ds.PatientID = patient_id
        ds.save_as(path)
    assert store_files(parse_node_url(orthanc.url), LOCAL, files).ok
    node = dataclasses.replace(parse_node_url(orthanc.url), name="query")
    found = Services(Config(query=dataclasses.replace(node, max_results=1))).find_studies(patient_id)
    assert len(found) == 1 and found.cut_at == 1
    found = Services(Config(query=dataclasses.replace(node, max_results=2))).find_studies(patient_id)
    assert len(found) == 2 and found.cut_at == 0
