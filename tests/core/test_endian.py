"""``kiosk.endian``: Explicit VR Big Endian data sets rewritten as Explicit VR Little Endian."""

from __future__ import annotations

import subprocess
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from kiosk.endian import EXPLICIT_LE, to_little_endian


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "SC_rgb_small_odd_big_endian.dcm", "ExplVR_BigEnd.dcm"])
def test_values_and_pixels_survive_the_byte_order_change(tmp_path, name):
    original = dcmread(get_testdata_file(name))
    ds = to_little_endian(dcmread(get_testdata_file(name)))
    path = tmp_path / "le.dcm"
    ds.save_as(path, enforce_file_format=True)
    back = dcmread(path)
    assert back.file_meta.TransferSyntaxUID == EXPLICIT_LE and back.original_encoding == (False, True)
    assert (back.pixel_array == original.pixel_array).all()
    def values(ds):  # what reads the same whatever the byte order: all but binary values (and group lengths)
        return {e.tag: e.value for e in ds if e.VR not in ("OB", "OW", "OF", "OL", "OD", "OV") and e.tag.element}

    assert values(back) == values(original)
    # DCMTK reads the file as Little Endian with the same rows and columns
    dump = subprocess.run(["/usr/bin/dcmdump", "+P", "Rows", "+P", "TransferSyntaxUID", str(path)],
                          capture_output=True, text=True, check=True).stdout
    assert "LittleEndianExplicit" in dump and f"US {original.Rows}" in dump


def test_a_binary_value_is_swapped_word_by_word():
    ds = dcmread(get_testdata_file("MR_small_bigendian.dcm"))
    raw = bytes(ds.PixelData)
    to_little_endian(ds)
    assert ds.PixelData[:4] == raw[1::-1] + raw[3:1:-1]
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert dcmread(BytesIO(buffer.getvalue())).PixelData == ds.PixelData
