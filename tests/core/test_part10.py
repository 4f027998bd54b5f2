"""The fast file-meta reader agrees with pydicom, and falls back to it for anything unusual."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import pytest

from kiosk.part10 import FileMeta, NotPart10Error, _read_with_pydicom, dataset_offset, read_meta


def pydicom_test_files() -> list[Path]:
    from pydicom.data import get_testdata_files

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # files that would need downloading are left out
        return [Path(p) for p in get_testdata_files("*") if Path(p).is_file()]


def outcome(read, path: Path) -> FileMeta | str:  # noqa: ANN001
    """What ``read`` makes of ``path``: its FileMeta, or the kind of error."""
    try:
        values = read(path)
    except NotPart10Error as exc:
        return "lacks" if "lacks" in exc.message else "not part 10"
    if isinstance(values, FileMeta):
        return values
    return FileMeta(**values) if all(values.values()) else "lacks"


def test_agrees_with_pydicom_on_its_test_files():
    files = pydicom_test_files()
    assert len(files) > 50
    outcomes = {path: outcome(_read_with_pydicom, path) for path in files}
    assert {type(o) for o in outcomes.values()} == {FileMeta, str}  # both kinds are covered
    for path, want in outcomes.items():
        assert outcome(read_meta, path) == want, path


def meta_group(elements: list[tuple[int, bytes, bytes]]) -> bytes:
    body = b""
    for element, vr, value in elements:
        if vr in (b"OB", b"UN"):
            body += struct.pack("<HH2sHI", 2, element, vr, 0, len(value)) + value
        else:
            body += struct.pack("<HH2sH", 2, element, vr, len(value)) + value
    return b"\0" * 128 + b"DICM" + struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body)) + body


def test_values_are_trimmed_and_other_elements_skipped(tmp_path):
    path = tmp_path / "a.dcm"
    path.write_bytes(meta_group([(0x0001, b"OB", b"\0\1"), (0x0002, b"UI", b"1.2.3\0"), (0x0003, b"UI", b"1.2.3.4\0"),
                                 (0x0010, b"UI", b"1.2.840.10008.1.2.1\0"), (0x0013, b"SH", b"KIOSK ")]) + b"rest")
    assert read_meta(path) == FileMeta("1.2.3", "1.2.3.4", "1.2.840.10008.1.2.1")


def test_a_wrong_group_length_falls_back_to_pydicom(tmp_path):
    data = bytearray(meta_group([(0x0002, b"UI", b"1.2.3\0"), (0x0003, b"UI", b"1.2.3.4\0"),
                                 (0x0010, b"UI", b"1.2.840.10008.1.2.1\0")]))
    struct.pack_into("<I", data, 140, 10)  # says 10 bytes: only part of the group
    path = tmp_path / "short.dcm"
    path.write_bytes(bytes(data))
    assert read_meta(path) == FileMeta("1.2.3", "1.2.3.4", "1.2.840.10008.1.2.1")


@pytest.mark.parametrize("content, message", [
    (b"", "not a DICOM Part 10 file"),
    (b"\0" * 128 + b"DIC", "not a DICOM Part 10 file"),
    (b"%PDF-1.4 not dicom" * 20, "not a DICOM Part 10 file"),
])
def test_not_part10(tmp_path, content, message):
    path = tmp_path / "x.dcm"
    path.write_bytes(content)
    with pytest.raises(NotPart10Error) as caught:
        read_meta(path)
    assert message in caught.value.message


def test_missing_values_are_named(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_bytes(meta_group([(0x0002, b"UI", b"1.2.3\0")]))
    with pytest.raises(NotPart10Error) as caught:
        read_meta(path)
    assert caught.value.message == "the file meta information lacks MediaStorageSOPInstanceUID, TransferSyntaxUID"


def test_unreadable_file(tmp_path):
    with pytest.raises(NotPart10Error) as caught:
        read_meta(tmp_path / "missing.dcm")
    assert "No such file" in caught.value.message


def test_dataset_offset_agrees_with_pynetdicom():
    from pynetdicom.dsutils import split_dataset

    checked = 0
    for path in pydicom_test_files():
        try:
            _, expected = split_dataset(path)
        except Exception:  # noqa: BLE001 - files pynetdicom cannot split are not sent this way either
            continue
        with open(path, "rb") as handle:
            offset = dataset_offset(handle)
        if offset is not None:
            assert offset == expected, path
            checked += 1
    assert checked > 50


@pytest.mark.parametrize("group_length", [10, 200])
def test_dataset_offset_does_not_trust_a_wrong_group_length(tmp_path, group_length):
    data = bytearray(meta_group([(0x0002, b"UI", b"1.2.3\0"), (0x0003, b"UI", b"1.2.3.4\0"),
                                 (0x0010, b"UI", b"1.2.840.10008.1.2.1\0")]) + b"\x08\x00\x16\x00UI\x06\x001.2.3\0")
    struct.pack_into("<I", data, 140, group_length)
    path = tmp_path / "lying.dcm"
    path.write_bytes(bytes(data))
    with open(path, "rb") as handle:
        assert dataset_offset(handle) is None


def test_whole_data_sets_pass_and_only_broken_ones_are_refused():
    """pydicom's test files: refused are exactly those cut short or not encoded as their transfer syntax says."""
    import pydicom

    from kiosk.dataset_check import check_complete

    refused, broken = set(), set()
    for path in pydicom_test_files():
        try:
            meta = read_meta(path)
        except NotPart10Error:
            continue
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            pydicom.dcmread(path)
        if "truncated" in path.name or any("VR, but found" in str(w.message) for w in seen):
            broken.add(path.name)
        try:
            check_complete(path, meta.transfer_syntax)
        except NotPart10Error:
            refused.add(path.name)
    assert len(broken) >= 2 and refused == broken


def _written(tmp_path, syntax: str) -> Path:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import RLELossless, generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    ds.PatientName = "CHECK^ME"
    ds.ReferencedStudySequence = [Dataset()]
    ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 32, 32, 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.arange(32 * 32, dtype=np.uint8).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax if syntax != RLELossless else "1.2.840.10008.1.2.1"
    if syntax == RLELossless:
        ds.compress(RLELossless, encoding_plugin="pydicom")
    path = tmp_path / f"{syntax}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2",
                                    "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.5"],
                         ids=["explicit", "implicit", "big-endian", "deflated", "rle"])
def test_a_data_set_cut_short_or_with_a_wrong_length_is_refused(tmp_path, syntax):
    from kiosk.dataset_check import IncompleteDataSet, check_complete

    path = _written(tmp_path, syntax)
    data = path.read_bytes()
    check_complete(path, syntax)
    check_complete(data, syntax)
    with pytest.raises(IncompleteDataSet) as caught:
        check_complete(data[:-20], syntax)  # truncated pixel data
    assert ("(7FE0,0010)" in caught.value.message or "inflated" in caught.value.message) and caught.value.hint
    if syntax == "1.2.840.10008.1.2.1.99":
        return
    name = b"CHECK^ME"
    at = data.index(name)
    length = struct.Struct(">H" if syntax == "1.2.840.10008.1.2.2" else "<H")
    width = 2 if syntax != "1.2.840.10008.1.2" else 4
    wrong = bytearray(data)
    wrong[at - width:at - width + 2] = length.pack(len(name) + 0x2000)  # the name's length overshoots
    with pytest.raises(IncompleteDataSet):
        check_complete(bytes(wrong), syntax)
