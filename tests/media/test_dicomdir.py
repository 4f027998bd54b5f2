"""The DICOMDIR writer (kiosk.media.dicomdir) through PDI exports: updates of DICOMDIRs other programs
wrote (DCMTK dcmmkdir, pydicom's FileSet) keep their records and files, and a File-set of several
patients, studies and series is linked right (pydicom walks it; DCMTK and dciodvfy accept it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from kiosk import IMPLEMENTATION_CLASS_UID
from kiosk.media.pdi import write_file_set
from kiosk.media.profiles import PROFILES
from tests.support.foreign_media import fingerprint, make_medium

CD = PROFILES["STD-GEN-CD"]
OFFSETS = ("OffsetOfTheNextDirectoryRecord", "OffsetOfReferencedLowerLevelDirectoryEntity")


def _object(target: Path, like: Path | None = None, **values) -> Path:
    """A copy of ``like`` (pydicom's CT_small by default) with a new SOP Instance UID and ``values``."""
    ds = dcmread(like or get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, enforce_file_format=True)
    return target


def _records(dicomdir: Path) -> list[dict]:
    """Every directory record of the DICOMDIR, as keyword -> value, without its two offsets."""
    return [{e.keyword: str(e.value) for e in record if e.keyword not in OFFSETS}
            for record in dcmread(dicomdir).DirectoryRecordSequence]


def _file_ids(root: Path) -> dict[str, str]:
    """SOP Instance UID -> File ID (relative path) of every instance pydicom's FileSet finds."""
    return {str(i.SOPInstanceUID): Path(i.path).relative_to(root).as_posix() for i in FileSet(root / "DICOMDIR")}


def _dcmdump(path: Path) -> str:
    dump = subprocess.run(["/usr/bin/dcmdump", "-q", str(path)], capture_output=True, text=True)
    assert dump.returncode == 0 and not dump.stderr, dump.stderr
    return dump.stdout


def test_an_export_to_a_medium_dcmmkdir_made_keeps_its_records_and_files(tmp_path, dciodvfy):
    root = tmp_path / "cd"
    old = make_medium(root, studies=1, series=2, per_series=2)  # DICOM/S000/R00n/I000n, DCMTK's DICOMDIR
    before_records = _records(root / "DICOMDIR")
    before_files = fingerprint(root / "DICOM")
    before_ids = _file_ids(root)
    # one more object of a series the medium holds, and one of a new patient
    same_series = _object(tmp_path / "in" / "a.dcm", like=next(iter(old.values())), InstanceNumber=9)
    other = _object(tmp_path / "in" / "b.dcm")
    result = write_file_set(root, [same_series, other], CD)
    assert result.failed == [] and len(result.written) == 2

    ids = _file_ids(root)
    assert len(ids) == len(old) + 2
    assert {uid: ids[uid] for uid in before_ids} == before_ids  # no file moved
    files = fingerprint(root / "DICOM")  # the old files as they were; the new one beside its series' files
    assert {path: files[path] for path in before_files} == before_files
    assert set(files) - set(before_files) == {"S000/R000/IM000000"}
    assert ids[str(dcmread(same_series).SOPInstanceUID)] == "DICOM/S000/R000/IM000000"
    assert ids[str(dcmread(other).SOPInstanceUID)] == "PT000000/ST000000/SE000000/IM000000"
    after = _records(root / "DICOMDIR")
    assert all(record in after for record in before_records)  # every record of dcmmkdir's, value for value
    assert len(after) == len(before_records) + 1 + 4  # a leaf; a patient, study, series and leaf
    assert dcmread(root / "DICOMDIR").file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID

    dciodvfy(root / "DICOMDIR")
    # DCMTK reads it to update it in turn (a copy): it finds every record, adds its own file, writes it back
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    extra = _object(copy / "EXTRA" / "X0000", like=next(iter(old.values())), InstanceNumber=10)
    done = subprocess.run(["/usr/bin/dcmmkdir", "-q", "+U", "+D", "DICOMDIR", str(extra.relative_to(copy))],
                          cwd=copy, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(FileSet(copy / "DICOMDIR")) == len(old) + 3


def test_a_file_set_of_several_patients_studies_and_series_is_linked_right(tmp_path, dciodvfy):
    layout = {(f"P{p}", s, r): [] for p in range(3) for s in range(2) for r in range(2)}
    uids = {key: (generate_uid(), generate_uid()) for key in {(p, s) for p, s, _ in layout}}
    series_uids = {key: generate_uid() for key in layout}
    made: dict[Path, tuple[str, str, str]] = {}
    for (patient, study, series), _ in layout.items():
        for number in range(2):
            path = _object(tmp_path / "in" / f"{patient}-{study}-{series}-{number}.dcm", PatientID=patient,
                           PatientName=f"Test^{patient}", StudyInstanceUID=uids[(patient, study)][0],
                           SeriesInstanceUID=series_uids[(patient, study, series)], InstanceNumber=number + 1)
            made[path] = (patient, uids[(patient, study)][0], series_uids[(patient, study, series)])
    files = sorted(made)
    usb = tmp_path / "usb"
    usb.mkdir()
    # two exports, interleaved: the second adds to patients, studies and series the first made, and new ones
    assert write_file_set(usb, files[::2], CD).failed == []
    assert write_file_set(usb, files, CD).failed == []

    fileset = FileSet(usb / "DICOMDIR")
    assert len(fileset) == len(files) == 24
    by_uid = {str(dcmread(path).SOPInstanceUID): where for path, where in made.items()}
    for instance in fileset:  # pydicom walks the offsets: each leaf under its own patient, study and series
        assert (instance.PatientID, instance.StudyInstanceUID, instance.SeriesInstanceUID) == \
            by_uid[str(instance.SOPInstanceUID)]
        assert Path(instance.path).is_file()
    types = [str(r.DirectoryRecordType) for r in dcmread(usb / "DICOMDIR").DirectoryRecordSequence]
    assert (types.count("PATIENT"), types.count("STUDY"), types.count("SERIES"), types.count("IMAGE")) == (3, 6, 12, 24)
    folders = {Path(i.path).parent for i in fileset}
    assert len(folders) == 12  # one folder per series, the second export's objects beside the first's

    dciodvfy(usb / "DICOMDIR")
    dump = _dcmdump(usb / "DICOMDIR")
    assert dump.count("DirectoryRecordType") == 3 + 6 + 12 + 24


def test_an_export_to_a_file_set_pydicom_wrote_adds_in_its_layout_and_moves_nothing(tmp_path):
    root = tmp_path / "usb"
    root.mkdir()
    series = generate_uid()
    first = [_object(tmp_path / "in" / f"{n}.dcm", SeriesInstanceUID=series, InstanceNumber=n + 1) for n in range(2)]
    fileset = FileSet()
    for path in first:
        fileset.add(dcmread(path))
    fileset.write(root)  # pydicom's FileSet, as the kiosk wrote media before its own DICOMDIR writer
    before = {path: data for path, data in fingerprint(root).items() if path != "DICOMDIR"}
    stray = root / "PT000000" / "ST000000" / "SE000000" / "IM000002"
    stray.write_bytes(b"not listed")  # left by an export that stopped before its DICOMDIR: not overwritten
    added = _object(tmp_path / "in" / "2.dcm", SeriesInstanceUID=series, InstanceNumber=3)
    assert write_file_set(root, [added], CD).failed == []
    ids = _file_ids(root)
    assert ids[str(dcmread(added).SOPInstanceUID)] == "PT000000/ST000000/SE000000/IM000003"
    assert stray.read_bytes() == b"not listed" and len(ids) == 3
    after = fingerprint(root)
    assert all(after[path] == data for path, data in before.items())
    assert FileSet(root / "DICOMDIR").UID == fileset.UID
