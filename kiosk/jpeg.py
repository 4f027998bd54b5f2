"""Reading a JPEG file's structure, and checking that its data matches it.

The dicomizer keeps baseline JPEG files as they are (no generation loss); to
do so it needs the frame header (size, precision, components, sampling),
the colour transform (JFIF/Adobe markers) and the EXIF orientation, and it
must reject truncated files. ``parse_jpeg`` reads the headers (pure Python, a
few microseconds per file); ``verify_jpeg`` decodes the data once, strictly,
because only a decoder can tell that it holds the image the header announces.
``with_huffman_tables`` completes the frames of MJPEG sources that leave their tables out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
# Start-of-frame markers (C0-CF except DHT C4, JPG C8, DAC CC).
SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


# The Huffman tables of ITU T.81 Annex K.3 (K.3.3.1 DC, K.3.3.2 AC; luminance class/id 0x00, 0x10,
# chrominance 0x01, 0x11): what an MJPEG frame without a DHT segment is coded with (the AVI1/MJPEG
# convention that libjpeg and FFmpeg's mjpeg2jpeg rely on too).
_DC_VALUES = bytes(range(12))
_AC_LUMA = bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
    "2433627282090a161718191a25262728292a3435363738393a434445464748494a"
    "535455565758595a636465666768696a737475767778797a838485868788898a"
    "92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9ca"
    "d2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa")
_AC_CHROMA = bytes.fromhex(
    "000102031104052131061241510761711322328108144291a1b1c109233352f0"
    "156272d10a162434e125f11718191a262728292a35363738393a434445464748494a"
    "535455565758595a636465666768696a737475767778797a82838485868788898a"
    "92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9ca"
    "d2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa")
_TABLES = ((0x00, (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0), _DC_VALUES),
           (0x10, (0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D), _AC_LUMA),
           (0x01, (0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0), _DC_VALUES),
           (0x11, (0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77), _AC_CHROMA))
_TABLE_DATA = b"".join(bytes([tc, *bits]) + values for tc, bits, values in _TABLES)
STANDARD_DHT = b"\xff\xc4" + struct.pack(">H", 2 + len(_TABLE_DATA)) + _TABLE_DATA


class JpegError(ValueError):
    """The bytes are not a complete, well-formed JPEG stream."""


@dataclass(frozen=True)
class JpegInfo:
    """What the headers of a JPEG stream say."""

    sof: int
    width: int
    height: int
    precision: int
    components: int
    component_ids: tuple[int, ...]
    sampling: tuple[tuple[int, int], ...]
    jfif: bool
    adobe_transform: int | None
    exif_orientation: int
    dpi: float | None = None
    huffman_tables: bool = True

    @property
    def baseline(self) -> bool:
        """Huffman, sequential, 8-bit, 1 or 3 components, tables included (MJPEG
        frames often leave them out): fits the JPEG Baseline transfer syntax as is."""
        return self.sof == 0xC0 and self.precision == 8 and self.components in (1, 3) and self.huffman_tables

    def ratio(self, size: int) -> float:
        """Compression ratio of this stream when it is ``size`` bytes long."""
        return self.width * self.height * self.components * (2 if self.precision > 8 else 1) / max(size, 1)

    @property
    def lossless(self) -> bool:
        """Process 14 (SOF3/7/11/15): decodes to exactly what was encoded."""
        return self.sof in (0xC3, 0xC7, 0xCB, 0xCF)

    @property
    def color_space(self) -> str:
        """'GRAY', 'YCbCr', 'RGB' or 'CMYK'/'YCCK' (the decoder's view of the components)."""
        if self.components == 1:
            return "GRAY"
        if self.components == 4:
            return "YCCK" if self.adobe_transform == 2 else "CMYK"
        if self.jfif:
            return "YCbCr"
        if self.adobe_transform is not None:
            return "YCbCr" if self.adobe_transform == 1 else "RGB"
        # No marker: libjpeg's rule, component IDs 'R','G','B' mean RGB.
        return "RGB" if self.component_ids == (0x52, 0x47, 0x42) else "YCbCr"

    @property
    def subsampled(self) -> bool:
        return len(set(self.sampling)) > 1


def parse_jpeg(data: bytes) -> JpegInfo:
    """Parse the markers of ``data`` up to the first scan; check the stream ends with EOI."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != SOI:
        raise JpegError("not a JPEG file (no start-of-image marker)")
    # Writers pad after EOI now and then; a truncated file has no EOI at all.
    if data.rfind(b"\xff\xd9", max(0, len(data) - 4096)) < 0:
        raise JpegError("the JPEG data is truncated (no end-of-image marker)")
    pos, frame, jfif, adobe, orientation, dpi, dht = 2, None, False, None, 1, None, False
    while True:
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise JpegError("the JPEG headers are corrupt (marker expected)")
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        segment = data[pos + 4:pos + 2 + length]
        if length < 2 or len(segment) != length - 2:
            raise JpegError("the JPEG headers are truncated or corrupt")
        if marker in SOF_MARKERS:
            if frame is not None:
                # Decoders disagree on which one counts (Pillow takes the last, libjpeg refuses).
                raise JpegError("the JPEG has more than one frame header (SOF marker); "
                                "hierarchical JPEG is not supported")
            frame = _frame(marker, segment)
        elif marker == 0xE0 and segment.startswith(b"JFIF\0"):
            jfif = True
            dpi = _jfif_dpi(segment)
        elif marker == 0xEE and segment.startswith(b"Adobe") and len(segment) >= 12:
            adobe = segment[11]
        elif marker == 0xE1 and segment.startswith(b"Exif\0\0"):
            orientation = _exif_orientation(segment[6:])
        elif marker == 0xC4:
            dht = True
        elif marker == SOS:
            break
        pos += 2 + length
    if frame is None:
        raise JpegError("the JPEG has no frame header")
    sof, width, height, precision, ids, sampling = frame
    if width == 0 or height == 0:
        raise JpegError("the JPEG has no image size (DNL images are not supported)")
    return JpegInfo(sof, width, height, precision, len(ids), ids, sampling, jfif, adobe, orientation, dpi, dht)


def with_huffman_tables(data: bytes) -> bytes:
    """``data`` with the standard Huffman tables (T.81 K.3) put before its first scan when it has
    none (many UVC cameras' MJPEG frames), else ``data`` itself: the result is a complete JPEG
    that decodes to the same picture. Raises ``JpegError`` when the headers are corrupt."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != SOI:
        raise JpegError("not a JPEG frame (no start-of-image marker)")
    pos = 2
    while True:
        while pos + 1 < len(data) and data[pos] == 0xFF and data[pos + 1] == 0xFF:
            pos += 1
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise JpegError("the JPEG headers are corrupt (marker expected)")
        marker = data[pos + 1]
        if marker == 0xC4:
            return data
        if marker == SOS:
            return data[:pos] + STANDARD_DHT + data[pos:]
        pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]


def _jfif_dpi(segment: bytes) -> float | None:
    """Horizontal density of a JFIF header in dots per inch (units 1: per inch, 2: per cm)."""
    if len(segment) < 12:
        return None
    units, density = segment[7], struct.unpack(">H", segment[8:10])[0]
    if density <= 1 or units not in (1, 2):
        return None
    return float(density) if units == 1 else round(density * 2.54, 2)


def _frame(marker: int, seg: bytes) -> tuple:
    if len(seg) < 6:
        raise JpegError("the JPEG frame header is truncated")
    precision, height, width, count = seg[0], *struct.unpack(">HH", seg[1:5]), seg[5]
    if len(seg) < 6 + 3 * count or count == 0:
        raise JpegError("the JPEG frame header is truncated")
    ids = tuple(seg[6 + 3 * i] for i in range(count))
    sampling = tuple((seg[7 + 3 * i] >> 4, seg[7 + 3 * i] & 15) for i in range(count))
    return marker, width, height, precision, ids, sampling


def _exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of IFD0, 1 when absent or unreadable."""
    try:
        endian = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack(endian + "I", tiff[4:8])
        (count,) = struct.unpack(endian + "H", tiff[ifd:ifd + 2])
        for i in range(count):
            entry = tiff[ifd + 2 + 12 * i: ifd + 14 + 12 * i]
            tag, typ = struct.unpack(endian + "HH", entry[:4])
            if tag == 0x0112 and typ == 3:
                value = struct.unpack(endian + "H", entry[8:10])[0]
                return value if 1 <= value <= 8 else 1
    except (KeyError, struct.error, IndexError):
        pass
    return 1


def verify_jpeg(data: bytes, info: JpegInfo) -> None:
    """Decode ``data`` once with libjpeg-turbo, treating its warnings as errors, and check
    the result has the size ``info`` (the frame header) gives; raise ``JpegError`` if not.

    Lenient decoders (Pillow, OpenCV) fill missing data with gray: a header that
    claims 9000 x 9000 over a 400 x 600 scan decodes "fine" to a 9000 x 9000 image.
    Huffman-coded 8-bit frames (baseline, extended, progressive) are checked, the
    others are left to the decoders that read them. Decoding at 1/8 scale still reads
    every coefficient, in a fraction of the time and memory.
    """
    if info.sof not in (0xC0, 0xC1, 0xC2) or info.precision != 8:
        return
    import simplejpeg

    colorspace = {1: "GRAY", 4: "CMYK"}.get(info.components, "RGB")
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace=colorspace, min_factor=8, min_height=1, min_width=1,
                                          strict=True)
    except ValueError as exc:
        raise JpegError(f"the JPEG data is corrupt or does not match its header ({exc})") from None
    expected = (-(-info.height // 8), -(-info.width // 8))
    if pixels.shape[:2] != expected:
        raise JpegError(f"the JPEG decodes to another size than its header says ({info.width} x {info.height})")


def decode_jpeg(data: bytes, info: JpegInfo | None = None) -> tuple["np.ndarray", int]:
    """Decode to (pixels, bits stored): 8-bit gray or RGB (CMYK/YCCK converted,
    EXIF orientation applied), or 12/16-bit gray as uint16."""
    import io

    import numpy as np
    from PIL import Image, ImageOps

    info = info or parse_jpeg(data)
    if info.precision > 8 or info.lossless:  # beyond Pillow: pylibjpeg-libjpeg decodes these
        return _decode_libjpeg(data, info)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB")  # Pillow undoes Adobe's CMYK inversion
            return np.asarray(image).copy(), 8
    except (OSError, SyntaxError, ValueError) as exc:
        raise JpegError(f"the JPEG data cannot be decoded ({exc})") from None


def _decode_libjpeg(data: bytes, info: JpegInfo) -> tuple["np.ndarray", int]:
    import numpy as np
    from libjpeg import decode

    if info.precision > 8 and info.components != 1:
        raise JpegError(f"{info.precision}-bit colour JPEG is not supported; convert it to 8-bit or to grayscale")
    if info.components not in (1, 3):
        raise JpegError(f"a lossless JPEG with {info.components} components is not supported")
    try:
        pixels = decode(data)
    except (RuntimeError, ValueError) as exc:
        raise JpegError(f"the JPEG data cannot be decoded ({exc})") from None
    if info.precision > 8:
        return pixels.astype(np.uint16, copy=False), info.precision
    return pixels.astype(np.uint8, copy=False), 8
