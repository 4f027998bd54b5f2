"""Review operations on captures: rotate, crop, invert.

Each function takes a ``Capture`` and returns a new one (captures are frozen);
the encoded original (JPEG passthrough) is dropped because the pixels no longer
match it. PDFs have no pixels and cannot be edited. Nothing here knows about
sessions, DICOM or the UI.
"""

from __future__ import annotations

import io

import numpy as np

from kiosk.capture import Capture, EncodedFormat
from kiosk.errors import KioskError


def pixels_of(capture: Capture) -> np.ndarray:
    """The capture's pixels, decoding a JPEG-only capture with Pillow."""
    if capture.pixels is not None:
        return capture.pixels
    if capture.encoded_format is EncodedFormat.JPEG and capture.encoded is not None:
        from PIL import Image

        with Image.open(io.BytesIO(capture.encoded)) as image:
            image = image.convert("RGB" if image.mode not in ("L", "I;16") else image.mode)
            return np.asarray(image)
    raise KioskError("this item is a PDF document and cannot be edited",
                     "delete it and import the document again if it is wrong")


def rotate(capture: Capture, quarter_turns: int = 1) -> Capture:
    """Rotate clockwise by 90 degrees times ``quarter_turns`` (negative: counter-clockwise)."""
    if quarter_turns % 4 == 0:
        return capture
    return capture.with_pixels(turn(pixels_of(capture), quarter_turns))


def turn(pixels: np.ndarray, quarter_turns: int) -> np.ndarray:
    """``pixels`` turned clockwise by ``quarter_turns`` quarters, contiguous (for encoders). 8-bit pages
    go through Pillow's transpose, several times faster than copying np.rot90's view."""
    turns = quarter_turns % 4
    if turns == 0:
        return pixels
    if pixels.dtype != np.uint8:
        return np.ascontiguousarray(np.rot90(pixels, k=-turns))  # np.rot90 turns counter-clockwise
    from PIL import Image

    method = {1: Image.Transpose.ROTATE_270, 2: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_90}
    return np.asarray(Image.fromarray(pixels).transpose(method[turns]))


def crop(capture: Capture, left: float, top: float, right: float, bottom: float) -> Capture:
    """Keep the box given as fractions (0..1) of width and height, origin top-left."""
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise KioskError("the crop box is empty or outside the image", "drag the corners to mark a smaller area inside it")
    pixels = pixels_of(capture)
    height, width = pixels.shape[:2]
    x0, x1 = int(round(left * width)), int(round(right * width))
    y0, y1 = int(round(top * height)), int(round(bottom * height))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise KioskError("the crop box is smaller than one pixel", "mark a larger area")
    return capture.with_pixels(np.ascontiguousarray(pixels[y0:y1, x0:x1]))


def invert(capture: Capture) -> Capture:
    """Swap dark and light (a film negative scanned as positive), within the bits in use."""
    pixels = pixels_of(capture)
    if pixels.dtype == np.bool_:
        return capture.with_pixels(~pixels)
    maximum = (1 << capture.effective_bits) - 1 if pixels.dtype == np.uint16 else 255
    # Values above bits_stored would wrap; clip first so the result stays in range.
    inverted = maximum - np.minimum(pixels, maximum).astype(pixels.dtype)
    return capture.with_pixels(inverted.astype(pixels.dtype))


def thumbnail(capture: Capture, size: int = 256) -> np.ndarray:
    """An 8-bit RGB preview at most ``size`` pixels on its longest side (for the UI)."""
    from PIL import Image

    pixels = pixels_of(capture)
    if pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8) * 255
    elif pixels.dtype == np.uint16:
        pixels = (pixels >> max(capture.effective_bits - 8, 0)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert("RGB")
    image.thumbnail((size, size))
    return np.asarray(image)
