"""Adding to a study already on the PACS (Orthanc): the next free Series Number, the study's own date,
time, ID and accession (DCMTK dcentvfy finds no conflict with the study there), and refusals."""

from __future__ import annotations

import subprocess
import time

import pydicom
import pytest

from kiosk.cli import main
from kiosk.config import parse_config, parse_node_url, to_toml
from kiosk.dicomize import BuildOptions, build_datasets, write_dataset
from kiosk.net.store import store_files
from kiosk.study import StudyContext
from tests.support.dicomize_helpers import capture_of, jpeg_bytes, pixels_of
from tests.support.peers import require_binary

PRIOR = dict(patient_name="PRIOR^PATRICIA", patient_id="PRI-1", accession="PACC9", study_description="Prior study",
             study_date="20250301", study_time="101500", study_id="S-PRIOR")


@pytest.fixture
def prior_study(orthanc, tmp_path):
    """A study with series 1 and 4 on the PACS: (its UID, its files, a config whose [query] is Orthanc)."""
    import pydicom.uid

    study = StudyContext.manual(study_uid=pydicom.uid.generate_uid(), **{**PRIOR, "patient_id": PRIOR["patient_id"] + tmp_path.name[-6:]})
    files = []
    for number in (1, 4):
        [ds] = build_datasets([capture_of("gray8", seed=number)], study, BuildOptions(first_series_number=number))
        files.append(write_dataset(ds, tmp_path / f"prior{number}.dcm"))
    node = parse_node_url(orthanc.url)
    assert store_files(node, parse_config({}).local, files).ok
    config = tmp_path / "kiosk.toml"
    config.write_text(to_toml(parse_config({"query": {"ae_title": node.ae_title, "host": node.host, "port": node.port}})))
    return study, files, config


def convert(tmp_path, config, *extra):
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "new.jpg").write_bytes(jpeg_bytes(pixels_of("rgb8")[0]))
    argv = ["convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *extra]
    return main((["--config", str(config)] if config else []) + argv)


def test_a_session_added_to_a_pacs_study_takes_the_next_series_number_and_the_studys_attributes(
        tmp_path, prior_study, capsys):
    from kiosk.audit import trail

    study, prior, config = prior_study
    started = time.time()
    code = convert(tmp_path, config, "--study-uid", study.study_uid, "--patient-id", study.patient_id,
                   "--patient-name", study.patient_name)
    assert code == 0, capsys.readouterr().err
    new = pydicom.dcmread(tmp_path / "out" / "new.dcm")
    assert new.SeriesNumber == 5  # after the highest seen (4), never one in use
    old = pydicom.dcmread(prior[0])
    for keyword in ("StudyDate", "StudyTime", "StudyID", "AccessionNumber", "StudyDescription"):
        assert new[keyword].value == old[keyword].value, keyword
    result = subprocess.run([require_binary("dcentvfy"), str(prior[0]), str(prior[1]), str(tmp_path / "out" / "new.dcm")],
                            capture_output=True, text=True)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert not problems, result.stdout + result.stderr
    # Audited: the PACS queries, and the study read to add to it (by its UID and patient).
    audited = trail.queue().entries(started)
    assert [e.event for e in audited].count("Query") == 2
    [accessed] = [e for e in audited if e.event == "DICOM Instances Accessed"]
    assert study.study_uid in accessed.summary and study.patient_id in accessed.summary


def test_the_study_of_another_patient_is_refused(tmp_path, prior_study, capsys):
    study, _, config = prior_study
    code = convert(tmp_path, config, "--study-uid", study.study_uid, "--patient-id", "SOMEONE-ELSE",
                   "--patient-name", "ELSE^SOMEONE")
    err = capsys.readouterr().err
    assert code != 0 and f"belongs to patient ID {study.patient_id}, not SOMEONE-ELSE" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_study_not_on_the_pacs_is_refused(tmp_path, prior_study, capsys):
    _, _, config = prior_study
    code = convert(tmp_path, config, "--study-uid", "1.2.826.0.1.3680043.10.543.404", "--patient-id", "X1",
                   "--patient-name", "NOBODY^X")
    assert code != 0 and "is not on the PACS" in capsys.readouterr().err


def test_a_study_uid_without_a_query_node_is_refused(tmp_path, capsys):
    code = convert(tmp_path, None, "--study-uid", "1.2.826.0.1.3680043.10.543.5", "--patient-id", "X1",
                   "--patient-name", "NOBODY^X")
    err = capsys.readouterr().err
    assert code == 2 and "needs the PACS query node" in err and "[query]" in err
