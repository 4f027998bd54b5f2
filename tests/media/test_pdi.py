"""PDI export (kiosk.media.pdi): a profile-conformant File-set, read back by pydicom, DCMTK, dciodvfy and xorriso.

The sources are pydicom's test files in many transfer syntaxes (each copy gets its own SOP
Instance UID: several are the same image) and objects the kiosk builds (a JPEG-LS multi-frame,
an Encapsulated PDF).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from kiosk import IMPLEMENTATION_CLASS_UID
from kiosk.capture import Capture, EncodedFormat, SourceKind
from kiosk.dicomize import BuildOptions, build_datasets, write_dataset
from kiosk.media.iso import MediaWriteError, burn, burn_argv, iso_argv, make_iso
from kiosk.media.pdi import ExportError, file_set_id, write_file_set
from kiosk.media.profiles import PROFILES, VIDEO
from kiosk.study import StudyContext
from tests.support.dicomize_helpers import capture_of, pdf_bytes

# pydicom test file -> whether its pixels were never lossy (compared exactly after export)
PYDICOM_FILES = {
    "CT_small.dcm": True,  # Explicit VR Little Endian
    "MR_small_implicit.dcm": True,
    "MR_small_jpeg_ls_lossless.dcm": True,
    "MR_small_RLE.dcm": True,
    "MR_small_jp2klossless.dcm": True,
    "SC_rgb_jpeg_gdcm.dcm": True,  # JPEG Lossless SV1
    "SC_rgb_rle_2frame.dcm": True,  # multi-frame
    "SC_rgb_jpeg_dcmtk.dcm": False,  # JPEG Baseline
    "JPEG2000.dcm": False,  # JPEG 2000 (lossy)
    "test-SR.dcm": True,  # no pixels
}
FILE_ID = re.compile(r"^[A-Z0-9_]{1,8}$")
HOSTILE = '<script>alert("x")</script>^Evil&Co'


def _copy(source: Path, target: Path, **values: str) -> Path:
    ds = dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(target, enforce_file_format=True)
    return target


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[Path, bool]:
    """Source file -> never lossy."""
    folder = tmp_path_factory.mktemp("sources")
    out: dict[Path, bool] = {}
    for name, lossless in PYDICOM_FILES.items():
        extra = {"PatientID": "SR1", "StudyDate": "20260101", "StudyTime": "1200", "StudyID": "1"} \
            if name == "test-SR.dcm" else {}
        out[_copy(Path(get_testdata_file(name)), folder / name, **extra)] = lossless
    study = StudyContext(patient_name=HOSTILE, patient_id="PDI-1", study_description="Hands & <feet>")
    frames = [capture_of("gray16", SourceKind.VIDEO_FRAME, seed=i, index=i) for i in range(3)]
    built = build_datasets(frames, study, BuildOptions(multiframe=True))  # JPEG-LS (the kiosk's default)
    pdf = Capture(SourceKind.FILE_IMPORT, encoded=pdf_bytes(), encoded_format=EncodedFormat.PDF)
    built += build_datasets([pdf], study, BuildOptions())
    for index, ds in enumerate(built):
        out[write_dataset(ds, folder / f"kiosk{index}.dcm", durable=False)] = True
    return out


def _by_uid(files) -> dict[str, Path]:
    return {str(dcmread(path, stop_before_pixels=True).SOPInstanceUID): Path(path) for path in files}


@pytest.mark.parametrize("name", list(PROFILES))
def test_an_export_follows_its_profile_and_is_read_back_by_pydicom_dcmtk_and_dciodvfy(tmp_path, sources, name,
                                                                                      dciodvfy):
    profile = PROFILES[name]
    result = write_file_set(tmp_path, list(sources), profile, label="Doe, Jane")
    assert result.failed == [] and len(result.written) == len(sources)
    fileset = FileSet(tmp_path / "DICOMDIR")
    assert len(fileset) == len(sources) and fileset.ID == "DOE_ JANE"
    originals = _by_uid(sources)
    for instance in fileset:
        file_id = Path(instance.path).relative_to(tmp_path)
        assert len(file_id.parts) <= 8 and all(FILE_ID.match(part) for part in file_id.parts), file_id
        written = dcmread(instance.path)
        syntax = str(written.file_meta.TransferSyntaxUID)
        assert syntax in profile.allowed and syntax == str(instance.TransferSyntaxUID)  # also when transcoded
        assert instance.SOPInstanceUID == written.file_meta.MediaStorageSOPInstanceUID == written.SOPInstanceUID
        assert instance.SOPClassUID == written.file_meta.MediaStorageSOPClassUID == written.SOPClassUID
        assert written.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
        source = originals[str(instance.SOPInstanceUID)]
        original = dcmread(source)
        if "PixelData" not in original:
            continue
        if sources[source]:
            assert np.array_equal(written.pixel_array, original.pixel_array), source.name
            assert written.get("LossyImageCompression", "00") == original.get("LossyImageCompression", "00")
        else:
            assert written.LossyImageCompression == "01", source.name  # its history stays
    dciodvfy(tmp_path / "DICOMDIR")
    dump = subprocess.run(["/usr/bin/dcmdump", str(tmp_path / "DICOMDIR")], capture_output=True, text=True)
    assert dump.returncode == 0 and dump.stdout.count('"Directory Record" IMAGE') >= 9, dump.stderr


def test_what_the_profile_allows_is_copied_as_it_is_but_for_the_file_meta(tmp_path, sources):
    source = next(p for p in sources if p.name == "MR_small_jpeg_ls_lossless.dcm")
    write_file_set(tmp_path, [source], PROFILES["STD-GEN-CD"])
    [cd] = FileSet(tmp_path / "DICOMDIR")
    usb = tmp_path / "usb"
    usb.mkdir()
    ct = next(p for p in sources if p.name == "CT_small.dcm")
    write_file_set(usb, [ct], PROFILES["STD-GEN-USB-JPEG"])
    [copied] = FileSet(usb / "DICOMDIR")
    original, written = dcmread(ct), dcmread(copied.path)
    assert written.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert original == written  # the data set itself is the same, element by element
    assert dcmread(cd.path).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"


def test_video_is_refused_with_its_reason_and_the_rest_is_written(tmp_path, sources):
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = sorted(VIDEO)[4]  # MPEG-4 AVC/H.264 High Profile
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\x00\x00\x00\x01" * 16])
    ds["PixelData"].VR = "OB"
    video = tmp_path / "video.dcm"
    ds.save_as(video, enforce_file_format=True)
    out = tmp_path / "cd"
    out.mkdir()
    ct = next(p for p in sources if p.name == "CT_small.dcm")
    result = write_file_set(out, [video, ct], PROFILES["STD-GEN-CD"])
    [(path, reason)] = result.failed
    assert path == video and "video" in reason and "STD-GEN-CD" in reason and "PACS" in reason
    assert result.written == [ct] and len(FileSet(out / "DICOMDIR")) == 1


def test_web_content_index_previews_and_readme(tmp_path, sources):
    write_file_set(tmp_path, list(sources), PROFILES["STD-GEN-CD"])
    page = (tmp_path / "INDEX.HTM").read_text(encoding="utf-8")
    assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "Hands &amp; &lt;feet&gt;" in page and 'href="README.TXT"' in page
    previews = sorted((tmp_path / "IHE_PDI").iterdir())
    assert previews and all(FILE_ID.match(p.stem) and p.suffix == ".JPG" for p in previews)
    for preview in previews:
        with Image.open(preview) as image:
            assert image.format == "JPEG" and max(image.size) <= 256
        assert f'src="IHE_PDI/{preview.name}"' in page
    readme = (tmp_path / "README.TXT").read_bytes()
    readme.decode("ascii")
    assert b"kiosk" in readme and b"STD-GEN-CD" in readme and HOSTILE.encode() not in readme


def test_no_web_content_when_turned_off(tmp_path, sources):
    write_file_set(tmp_path, list(sources)[:2], PROFILES["STD-GEN-USB"], web_content=False)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"DICOMDIR", "README.TXT"} <= names and not names & {"INDEX.HTM", "IHE_PDI"}


def test_a_second_export_to_the_same_medium_adds_to_its_file_set(tmp_path, sources):
    files = list(sources)
    write_file_set(tmp_path, files[:4], PROFILES["STD-GEN-USB"])
    first = FileSet(tmp_path / "DICOMDIR")
    before = {str(i.SOPInstanceUID): (Path(i.path), Path(i.path).read_bytes()) for i in first}
    result = write_file_set(tmp_path, files[2:], PROFILES["STD-GEN-USB"])
    assert result.failed == [] and len(result.written) == len(files) - 2
    fileset = FileSet(tmp_path / "DICOMDIR")
    uids = [str(i.SOPInstanceUID) for i in fileset]
    assert sorted(uids) == sorted(_by_uid(files)) and len(set(uids)) == len(uids)
    assert fileset.UID == first.UID
    for uid, (path, data) in before.items():  # the first export's files stay where and as they were
        assert path.read_bytes() == data
    assert not (tmp_path / "DICOMDIR.NEW").exists()


def test_cancel_stops_before_the_next_file_and_the_dicomdir_lists_what_was_written(tmp_path, sources):
    cancel = threading.Event()
    files = list(sources)[:4]

    def progress(done: int, total: int) -> None:
        if done == 2:
            cancel.set()

    result = write_file_set(tmp_path, files, PROFILES["STD-GEN-CD"], progress=progress, cancel=cancel)
    assert result.written == files[:2] and [reason for _, reason in result.failed] == ["cancelled"] * 2
    assert len(FileSet(tmp_path / "DICOMDIR")) == 2


def test_a_folder_with_an_unreadable_dicomdir_or_none_at_all_is_refused(tmp_path, sources):
    with pytest.raises(ExportError, match="is not there"):
        write_file_set(tmp_path / "absent", list(sources), PROFILES["STD-GEN-CD"])
    (tmp_path / "DICOMDIR").write_bytes(b"not DICOM")
    with pytest.raises(ExportError, match="DICOMDIR .* cannot be read"):
        write_file_set(tmp_path, list(sources), PROFILES["STD-GEN-CD"])


def test_file_set_ids_are_upper_case_and_short():
    assert file_set_id("Müller-Lüdenscheidt, Hans") == "M_LLER_L_DENSCHE"
    assert file_set_id("") == "KIOSK" and file_set_id("  p-11 ") == "P_11"


def test_an_iso_image_made_with_xorriso_holds_the_file_set(tmp_path, sources):
    if not shutil.which("xorriso"):
        pytest.skip("xorriso is not installed (packaging/install-deps.sh)")
    folder = tmp_path / "medium"
    folder.mkdir()
    write_file_set(folder, list(sources)[:3], PROFILES["STD-GEN-CD"])
    iso = tmp_path / "medium.iso"
    make_iso(folder, iso, "Doe, Jane 2026")
    listing = subprocess.run(["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"],
                             capture_output=True, text=True, check=True).stdout
    found = {line.strip().strip("'") for line in listing.splitlines()}
    expected = {"/" + p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert expected and expected <= found
    volume = subprocess.run(["xorriso", "-indev", str(iso), "-pvd_info"], capture_output=True, text=True).stdout
    assert "DOE__JANE_2026" in volume


def test_making_an_iso_of_a_folder_without_a_dicomdir_is_refused(tmp_path):
    with pytest.raises(MediaWriteError, match="no DICOMDIR"):
        make_iso(tmp_path, tmp_path / "x.iso")


def test_burning_to_a_drive_that_is_not_there_is_refused(tmp_path):
    with pytest.raises(MediaWriteError, match="no disc drive /dev/kiosk-no-such-drive"):
        burn(tmp_path, "/dev/kiosk-no-such-drive")
    with pytest.raises(MediaWriteError, match="no disc drive"):
        burn(tmp_path, str(tmp_path))  # a folder is not a drive


def test_the_xorriso_command_lines():
    assert iso_argv(Path("/m"), Path("/t/x.iso"), "a b") == [
        "xorriso", "-as", "mkisofs", "-quiet", "-iso-level", "1", "-r", "-J", "-V", "A_B", "-o", "/t/x.iso", "/m"]
    assert burn_argv(Path("/t/x.iso"), "/dev/sr0") == [
        "xorriso", "-as", "cdrecord", "-v", "dev=/dev/sr0", "blank=as_needed", "-eject", "/t/x.iso"]
