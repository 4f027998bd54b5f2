"""``kiosk media list`` as a user runs it, over the dcmmkdir CD (fixture ``dicom_cd``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys


def kiosk(*args: str, check: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "kiosk", *args], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    assert result.returncode == check, result.stdout + result.stderr
    return result


def test_media_list_shows_patients_studies_and_series_as_the_medium_names_them(dicom_cd):
    out = kiosk("media", "list", str(dicom_cd.root)).stdout
    assert f"({dicom_cd.label}), read through its DICOMDIR: 2 patients, 4 studies, 28 instances" in out
    assert "Patient DOE^JANE, ID PAT001 (issuer HOSP_A), born 1970-01-01, F" in out
    assert "Patient MÜLLER^HANS, ID PAT002, born 1985-12-12, M" in out
    assert "  Study 2023-01-05  CT HEAD  CT, MR  2 series, 9 instances, " in out
    assert "    Series   2  MR      T1  6 instances" in out
    assert "    Series   4  ES      ENDOSCOPY CLIP  1 instance" in out
    assert "problem" not in out
    # Patients and studies in the reader's order: by name, then by date.
    assert out.index("DOE^JANE") < out.index("2023-01-05") < out.index("2024-03-10") < out.index("MÜLLER^HANS") \
        < out.index("2022-07-20") < out.index("2022-10-01")


def test_media_list_json_holds_the_truth(dicom_cd):
    listed = json.loads(kiosk("media", "list", "--json", str(dicom_cd.root)).stdout)
    assert listed["has_dicomdir"] and listed["label"] == dicom_cd.label and listed["problems"] == []
    assert [(p["patient_id"], p["issuer"], p["name"]) for p in listed["patients"]] == \
        [(p.patient_id, p.issuer, p.name) for p in dicom_cd.patients]
    for patient, truth in zip(listed["patients"], dicom_cd.patients):
        assert [(s["uid"], s["date"], s["description"], s["modalities"]) for s in patient["studies"]] == \
            [(s.uid, s.date, s.description, s.modalities) for s in truth.studies]
        for study, t_study in zip(patient["studies"], truth.studies):
            assert [(s["uid"], s["number"], s["modality"], s["instances"]) for s in study["series"]] == \
                [(s.uid, s.number, s.modality, len(s.files)) for s in t_study.series]
            assert study["instances"] == sum(len(s.files) for s in t_study.series)
            assert study["size"] == sum((dicom_cd.root / f).stat().st_size for s in t_study.series
                                        for f in s.files.values())


def test_media_list_names_each_problem_file_and_what_to_do_and_exits_1(dicom_cd, tmp_path):
    cd = shutil.copytree(dicom_cd.root, tmp_path / "CDROM")
    missing, foreign = list(dicom_cd.files.values())[:2]
    (cd / missing).unlink()
    (cd / foreign).write_text("hello\n")
    result = kiosk("media", "list", str(cd), check=1)
    assert "26 instances" in result.stdout
    assert "2 problems: these files are not imported" in result.stdout
    assert f"  {missing}: the DICOMDIR lists this file but it is not on the medium" in result.stdout
    assert f"  {foreign}: is not a DICOM file; this file is not imported" in result.stdout
    assert "    -> ask the sender for a new copy of the medium" in result.stdout
    listed = json.loads(kiosk("media", "list", "--json", str(cd), check=1).stdout)
    assert {p["path"] for p in listed["problems"]} == {missing, foreign}


def test_media_list_of_no_medium_is_one_clear_error_and_no_action_is_a_usage_error(tmp_path):
    result = kiosk("media", "list", str(tmp_path / "cdrom"), check=1)
    assert "is not a folder" in result.stderr and "CD or USB stick" in result.stderr
    assert kiosk("media", check=2).stderr


def test_media_list_logs_no_patient_data(dicom_cd):
    result = kiosk("--verbose", "media", "list", str(dicom_cd.root))
    assert "medium read: 28 file(s), 28 instance(s)" in result.stderr
    for value in ("DOE^JANE", "PAT001", "MÜLLER", "PAT002", "1970-01-01", "HOSP_A"):
        assert value in result.stdout and value not in result.stderr
    assert "19700101" not in result.stderr
