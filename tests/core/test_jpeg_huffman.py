"""The standard Huffman tables put back into MJPEG frames that leave them out (UVC cameras)."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from kiosk.jpeg import STANDARD_DHT, JpegError, parse_jpeg, with_huffman_tables


def _segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, whole segment) up to the first scan."""
    pos, found = 2, []
    while data[pos + 1] != 0xDA:
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        found.append((data[pos + 1], data[pos:pos + 2 + length]))
        pos += 2 + length
    return found


def _stripped(data: bytes) -> bytes:
    """``data`` without its DHT segments, as a UVC camera sends it."""
    for marker, segment in _segments(data):
        if marker == 0xC4:
            data = data.replace(segment, b"", 1)
    return data


def _jpeg(pixels: np.ndarray, subsampling: int = 2) -> bytes:
    out = io.BytesIO()
    # optimize=False: libjpeg codes with the T.81 K.3 tables, as MJPEG cameras do.
    Image.fromarray(pixels).save(out, "JPEG", quality=85, optimize=False, subsampling=subsampling)
    return out.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("subsampling", [0, 1, 2])  # 4:4:4, 4:2:2, 4:2:0
def test_a_frame_stripped_of_its_tables_decodes_identically_once_they_are_put_back(subsampling):
    rng = np.random.default_rng(7)
    pixels = np.clip(rng.normal(128, 60, (96, 128, 3)), 0, 255).astype(np.uint8)
    original = _jpeg(pixels, subsampling)
    stripped = _stripped(original)
    assert not parse_jpeg(stripped).huffman_tables and not parse_jpeg(stripped).baseline
    fixed = with_huffman_tables(stripped)
    assert parse_jpeg(fixed).baseline
    assert np.array_equal(_decoded(fixed), _decoded(original))
    # Only the tables went in, before the scan; every byte of the frame is still there, in order.
    sos = stripped.index(b"\xff\xda")
    assert fixed == stripped[:sos] + STANDARD_DHT + stripped[sos:]


def test_the_tables_are_libjpegs_standard_ones():
    """libjpeg writes the K.3 tables when not optimising: the same table data, byte for byte."""
    original = _jpeg(np.zeros((16, 16, 3), np.uint8))
    written = b"".join(segment[4:] for marker, segment in _segments(original) if marker == 0xC4)
    assert written == STANDARD_DHT[4:]


def test_a_frame_with_tables_is_left_as_it_is():
    original = _jpeg(np.full((16, 16, 3), 90, np.uint8))
    assert with_huffman_tables(original) is original


def test_not_a_jpeg_is_refused():
    with pytest.raises(JpegError, match="not a JPEG"):
        with_huffman_tables(b"\x00\x00\x00\x01\x67")
    with pytest.raises(JpegError, match="corrupt"):
        with_huffman_tables(b"\xff\xd8\x00\x10JFIF")
