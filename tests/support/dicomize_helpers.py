"""Small generated inputs for the dicomizer tests (no static files needed)."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from kiosk.capture import Capture, EncodedFormat, SourceKind


def gradient(rows: int = 48, cols: int = 40, seed: int = 0) -> np.ndarray:
    """A smooth 8-bit image with noise: compressible, yet not trivially."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    return ((x * 5 + y * 3) % 256 + rng.integers(0, 8, (rows, cols))).clip(0, 255).astype(np.uint8)


def pixels_of(kind: str, seed: int = 0) -> tuple[np.ndarray, int | None]:
    """(pixels, bits_stored) for a pixel kind: gray8, rgb8, gray12, gray16, bit1."""
    g = gradient(seed=seed)
    if kind == "gray8":
        return g, None
    if kind == "rgb8":
        return np.dstack([g, g[::-1], 255 - g]).copy(), None
    if kind == "gray12":
        return (g.astype(np.uint16) * 16 + 3), 12
    if kind == "gray16":
        return (g.astype(np.uint16) * 257), 16
    if kind == "bit1":
        return g > 128, None
    raise ValueError(kind)


def jpeg_bytes(pixels: np.ndarray, **save: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", **save)
    return out.getvalue()


def with_frame_header(data: bytes, height: int, width: int, where: str = "replace") -> bytes:
    """``data`` (a JPEG) with its frame header (SOF) saying ``height`` x ``width``: in place of
    the real one, or as a second SOF before it or after the scan."""
    pos = 2
    while data[pos + 1] not in (0xC0, 0xC2):
        pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    end = pos + 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    sof = data[pos:pos + 5] + struct.pack(">HH", height, width) + data[pos + 9:end]
    if where == "replace":
        return data[:pos] + sof + data[end:]
    if where == "before":
        return data[:pos] + sof + data[pos:]
    return data[:-2] + sof + data[-2:]  # after the scan, before EOI


def pdf_bytes(content: bytes = b"BT /F1 24 Tf 72 720 Td (Report) Tj ET") -> bytes:
    """A one-page PDF (written by pypdf) whose page draws ``content``."""
    from pypdf import PdfWriter
    from pypdf.generic import ContentStream

    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    stream = ContentStream(None, writer)
    stream.set_data(content)
    page.replace_contents(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def capture_of(kind: str, source_kind: SourceKind = SourceKind.SCANNED_DOCUMENT, seed: int = 0,
               **extra: object) -> Capture:
    """A capture of ``kind`` (pixel kinds above, or jpeg-rgb / jpeg-gray encoded originals)."""
    if kind.startswith("jpeg-"):
        pixels, _ = pixels_of("rgb8" if kind == "jpeg-rgb" else "gray8", seed)
        return Capture(source_kind, encoded=jpeg_bytes(pixels, quality=90), encoded_format=EncodedFormat.JPEG,
                       dpi=200, **extra)
    pixels, bits = pixels_of(kind, seed)
    return Capture(source_kind, pixels=pixels, bits_stored=bits, dpi=300, **extra)
