"""The File-set Reader over a DICOMDIR made by DCMTK's dcmmkdir, over plain folders, and over damaged media."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from tests.support.media_data import DicomCd

from kiosk.media.model import Medium
from kiosk.media.reader import MediaError, ReadCancelled, holds_dicom, inserted_media, read_medium


def structure(medium: Medium) -> list:
    """The medium as the truth in ``DicomCd`` gives it: patients, studies, series, instances in order."""
    return [((p.patient_id, p.issuer, p.name),
             [(st.uid, st.date, st.description, st.modalities,
               [(se.uid, se.number, se.modality, se.description,
                 [(i.sop_instance_uid, medium.relative(i.path)) for i in se.instances]) for se in st.series])
              for st in p.studies])
            for p in medium.patients]


def truth(cd: DicomCd) -> list:
    return [((p.patient_id, p.issuer, p.name),
             [(st.uid, st.date, st.description, st.modalities,
               [(se.uid, se.number, se.modality, se.description, list(se.files.items())) for se in st.series])
              for st in p.studies])
            for p in cd.patients]


def problems(medium: Medium) -> dict[str, str]:
    return {medium.relative(p.path): p.problem for p in medium.problems}


@pytest.fixture
def cd(dicom_cd, tmp_path) -> Path:
    """A copy of the session's CD, free to damage."""
    return Path(shutil.copytree(dicom_cd.root, tmp_path / "CDROM"))


def test_a_dicomdir_made_by_dcmmkdir_is_read_as_the_files_were_written(dicom_cd):
    counts = []
    medium = read_medium(dicom_cd.root, progress=counts.append)
    assert medium.has_dicomdir and medium.label == dicom_cd.label
    assert structure(medium) == truth(dicom_cd)
    assert medium.problems == [] and medium.other_files == 0
    assert counts[-1] == len(dicom_cd.files) and counts == sorted(counts)
    # What the importer needs of each instance, from its own header.
    instances = {i.sop_instance_uid: i for _, st in medium.studies() for i in st.instances}
    syntaxes = {se.uid: se.transfer_syntaxes for p in dicom_cd.patients for st in p.studies for se in st.series}
    for _, study in medium.studies():
        for series in study.series:
            assert {i.transfer_syntax for i in series.instances} == syntaxes[series.uid]
    assert len({i.transfer_syntax for i in instances.values()}) >= 12
    assert len({i.sop_class_uid for i in instances.values()}) >= 10
    for uid, relative in dicom_cd.files.items():
        assert instances[uid].size == (dicom_cd.root / relative).stat().st_size
    patient = medium.patients[0]
    assert (patient.birth_date, patient.sex) == ("19700101", "F")
    study = patient.studies[0]
    assert (study.accession, study.study_id, study.time) == ("ACC101", "1", "101500")
    assert medium.patients[1].name == "MÜLLER^HANS"  # ISO_IR 100, decoded


def test_without_a_dicomdir_the_folders_are_searched_and_other_files_only_counted(cd, dicom_cd):
    from pydicom import dcmread

    (cd / "DICOMDIR").unlink()
    (cd / "README.TXT").write_text("Images of your examination. Run VIEWER/VIEWER.EXE to see them.\n")
    (cd / "AUTORUN.INF").write_text("[autorun]\nopen=VIEWER\\VIEWER.EXE\n")
    (cd / "VIEWER" / "LIB").mkdir(parents=True)
    for name in ("VIEWER.EXE", "LIB/QT5CORE.DLL", "LIB/QT5GUI.DLL", "LIB/HELP.HTM"):
        (cd / "VIEWER" / name).write_bytes(b"MZ\x90\x00" + bytes(500))
    (cd / ".Trashes").mkdir()
    (cd / ".Trashes" / "IM00001").write_bytes((cd / next(iter(dicom_cd.files.values()))).read_bytes())
    (cd / "System Volume Information").mkdir()
    (cd / "System Volume Information" / "IndexerVolumeGuid").write_bytes(b"\x00" * 76)
    # A copy of a DICOMDIR in a folder (the Media Storage Directory SOP class) is never an instance.
    shutil.copy(dicom_cd.root / "DICOMDIR", cd / "VIEWER" / "INDEX")
    medium = read_medium(cd)
    assert not medium.has_dicomdir and medium.label == "CDROM"
    assert structure(medium) == truth(dicom_cd)
    assert medium.problems == [] and medium.other_files == 6
    # A file without the Part 10 preamble and meta information is read if it names its SOP class and instance.
    bare = cd / "DICOM" / "PAT1" / "ST1" / "SE1" / "IM00001"
    ds = dcmread(bare)
    del ds.file_meta
    ds.preamble = None
    ds.save_as(bare, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert bare.read_bytes()[128:132] != b"DICM"
    again = read_medium(cd)
    assert structure(again) == truth(dicom_cd)
    assert [i.transfer_syntax for i in again.patients[0].studies[0].series[0].instances][0] == "1.2.840.10008.1.2"


def test_a_plain_iso_9660_disc_shown_in_lower_case_is_read_through_its_dicomdir(cd, dicom_cd):
    """Linux shows a disc without Rock Ridge or Joliet names in lower case; its DICOMDIR names them in upper."""
    for path in sorted(cd.rglob("*"), key=lambda p: -len(p.parts)):
        path.rename(path.with_name(path.name.lower()))
    medium = read_medium(cd)
    assert medium.has_dicomdir and medium.problems == []
    expected = [(k, [(u, d, s, m, [(a, b, c, e, [(uid, rel.lower()) for uid, rel in f]) for a, b, c, e, f in series])
                     for u, d, s, m, series in studies]) for k, studies in truth(dicom_cd)]
    assert structure(medium) == expected


def test_missing_damaged_and_foreign_files_are_listed_and_the_rest_is_read(cd, dicom_cd):
    files = dicom_cd.files
    series = {se.description: list(se.files.values()) for p in dicom_cd.patients for st in p.studies
              for se in st.series}
    missing, cut_in_pixels, cut_in_header = series["T1"][0], series["HEAD AXIAL"][0], series["T1"][1]
    foreign, emptied = series["REPORT"][0], series["PA"][0]
    (cd / missing).unlink()
    data = (cd / cut_in_pixels).read_bytes()
    (cd / cut_in_pixels).write_bytes(data[:len(data) - 1000])  # a copy that stopped before the end
    (cd / cut_in_header).write_bytes((cd / cut_in_header).read_bytes()[:400])
    (cd / foreign).write_text("not an image\n")
    (cd / emptied).write_bytes(b"")
    medium = read_medium(cd)
    found = problems(medium)
    assert set(found) == {missing, cut_in_pixels, cut_in_header, foreign, emptied}, found
    assert "not on the medium" in found[missing]
    assert "cut short" in found[cut_in_pixels] and "bytes" in found[cut_in_pixels]
    assert "damaged" in found[cut_in_header]
    assert "not a DICOM file" in found[foreign] and "not a DICOM file" in found[emptied]
    assert all(p.hint for p in medium.problems)
    read = {i.sop_instance_uid for _, st in medium.studies() for i in st.instances}
    assert read == {uid for uid, rel in files.items() if rel not in found}


def test_a_file_that_is_not_the_instance_the_dicomdir_names_is_not_read(cd, dicom_cd):
    first, second = list(dicom_cd.files.values())[:2]
    a, b = (cd / first).read_bytes(), (cd / second).read_bytes()
    (cd / first).write_bytes(b)
    (cd / second).write_bytes(a)
    found = problems(read_medium(cd))
    assert set(found) == {first, second} and all("where the DICOMDIR says" in text for text in found.values())


def test_one_sop_instance_uid_with_different_contents_imports_neither_copy(cd, dicom_cd):
    from pydicom import dcmread

    (cd / "DICOMDIR").unlink()
    uid, relative = next(iter(dicom_cd.files.items()))
    (cd / "COPY").mkdir()
    shutil.copy(cd / relative, cd / "COPY" / "SAME")  # the same file twice: kept once (the first found), silently
    medium = read_medium(cd)
    assert medium.problems == []
    first = medium.patients[0].studies[0].series[0].instances[0]
    assert first.sop_instance_uid == uid and medium.relative(first.path) == "COPY/SAME"
    assert sum(len(st.instances) for _, st in medium.studies()) == len(dicom_cd.files)
    other = dcmread(cd / relative)
    other.PatientName = "SOMEONE^ELSE"
    other.save_as(cd / "COPY" / "OTHER")
    medium = read_medium(cd)
    found = problems(medium)
    assert set(found) == {relative, "COPY/OTHER", "COPY/SAME"}
    assert all(uid in text and "different content" in text for text in found.values())
    assert uid not in {i.sop_instance_uid for _, st in medium.studies() for i in st.instances}
    assert sum(len(st.instances) for _, st in medium.studies()) == len(dicom_cd.files) - 1


@pytest.mark.filterwarnings("ignore:End of file reached")  # pydicom, reading the damaged DICOMDIR
def test_a_dicomdir_that_cannot_be_parsed_gives_way_to_a_folder_search(cd, dicom_cd):
    data = (cd / "DICOMDIR").read_bytes()
    (cd / "DICOMDIR").write_bytes(data[:600] + b"\xff" * 64)
    medium = read_medium(cd)
    assert not medium.has_dicomdir
    assert list(problems(medium)) == ["DICOMDIR"] and "searched" in medium.problems[0].problem
    assert structure(medium) == truth(dicom_cd)


def test_a_medium_removed_while_being_read_is_an_error_and_a_cancelled_read_returns_nothing(cd, tmp_path):
    def pull_out(_count: int) -> None:
        if cd.exists():
            cd.rename(tmp_path / "gone")

    with pytest.raises(MediaError, match="went away while it was being read"):
        read_medium(cd, progress=pull_out)
    (tmp_path / "gone").rename(cd)
    cancel = threading.Event()
    with pytest.raises(ReadCancelled):
        read_medium(cd, cancel=cancel, progress=lambda _count: cancel.set())
    with pytest.raises(MediaError, match="is not a folder"):
        read_medium(tmp_path / "nothing here")


def test_inserted_media_are_the_mounted_folders_holding_dicom(cd, dicom_cd, tmp_path):
    media, run_media, mnt = tmp_path / "media", tmp_path / "run" / "media", tmp_path / "mnt"
    shutil.copytree(cd, media / "alice" / "PATIENT_CD")  # /media/USER/LABEL, with a DICOMDIR
    (media / "alice" / "HOLIDAY").mkdir()
    (media / "alice" / "HOLIDAY" / "beach.jpg").write_bytes(b"\xff\xd8\xff" + bytes(100))
    usb = mnt / "usb"  # /mnt/X, DICOM files without a DICOMDIR
    shutil.copytree(cd / "DICOM" / "PAT2", usb / "EXPORT")
    (usb / "README.TXT").write_text("exported by a viewer\n")
    (run_media / "bob").mkdir(parents=True)
    assert holds_dicom(media / "alice" / "PATIENT_CD") and holds_dicom(usb)
    assert not holds_dicom(media / "alice" / "HOLIDAY") and not holds_dicom(tmp_path / "absent")
    found = inserted_media([str(media), str(run_media), str(mnt), str(tmp_path / "no such mount point")])
    assert found == [media / "alice" / "PATIENT_CD", usb]
    os.chmod(usb, 0)  # unreadable (unless root): still no error
    try:
        assert inserted_media([str(mnt)]) in ([], [usb])
    finally:
        os.chmod(usb, 0o755)
