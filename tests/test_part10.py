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
