"""kiosk.processing: rotate, crop, invert, thumbnail on Capture objects."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from kiosk.capture import Capture, EncodedFormat, SourceKind
from kiosk.errors import KioskError
from kiosk.processing import crop, invert, rotate, thumbnail


def gray(array) -> Capture:
    return Capture(SourceKind.SCANNED_DOCUMENT, pixels=np.asarray(array, dtype=np.uint8))


def test_rotate_clockwise_and_back():
    capture = gray([[1, 2, 3], [4, 5, 6]])
    turned = rotate(capture)
    assert turned.pixels.tolist() == [[4, 1], [5, 2], [6, 3]]
    assert rotate(turned, -1).pixels.tolist() == capture.pixels.tolist()
    assert rotate(capture, 2).pixels.tolist() == [[6, 5, 4], [3, 2, 1]]
    assert turned.pixels.flags["C_CONTIGUOUS"]


def test_rotate_drops_jpeg_original_and_decodes_jpeg_only():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 4), (200, 10, 10)).save(buffer, "JPEG")
    capture = Capture(SourceKind.VIDEO_FRAME, encoded=buffer.getvalue(), encoded_format=EncodedFormat.JPEG)
    turned = rotate(capture)
    assert turned.pixels.shape == (8, 4, 3) and turned.encoded is None and turned.encoded_format is None


def test_crop_fractions():
    capture = gray(np.arange(100).reshape(10, 10))
    cropped = crop(capture, 0.2, 0.5, 0.6, 1.0)
    assert cropped.pixels.shape == (5, 4) and cropped.pixels[0, 0] == 52
    with pytest.raises(KioskError):
        crop(capture, 0.5, 0.5, 0.4, 1.0)


def test_invert_respects_bits_stored():
    assert invert(gray([[0, 255, 10]])).pixels.tolist() == [[255, 0, 245]]
    twelve = Capture(SourceKind.DIGITIZED_FILM, pixels=np.array([[0, 4095, 5000]], np.uint16), bits_stored=12)
    assert invert(twelve).pixels.tolist() == [[4095, 0, 0]]
    bits = Capture(SourceKind.SCANNED_DOCUMENT, pixels=np.array([[True, False]]))
    assert invert(bits).pixels.tolist() == [[False, True]]


def test_pdf_cannot_be_edited():
    pdf = Capture(SourceKind.FILE_IMPORT, encoded=b"%PDF-1.4", encoded_format=EncodedFormat.PDF)
    with pytest.raises(KioskError, match="PDF"):
        rotate(pdf)


def test_thumbnail_is_small_rgb():
    film = Capture(SourceKind.DIGITIZED_FILM, pixels=np.full((1000, 500), 4095, np.uint16), bits_stored=12)
    thumb = thumbnail(film, 100)
    assert thumb.shape == (100, 50, 3) and thumb.dtype == np.uint8 and thumb.max() == 255
