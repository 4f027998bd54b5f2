"""Capture: what every acquisition source hands to the dicomizer.

A capture is either pixels (a numpy array) or the original encoded bytes where
they can be kept unchanged (a JPEG file, a PDF), plus what is known of its
origin. Drivers create captures; processing derives new ones; the dicomizer
turns them into DICOM objects. Nothing here imports pydicom.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from kiosk.video.facts import VideoFacts


class SourceKind(enum.Enum):
    """Where a capture came from; decides the Conversion Type (0008,0064)."""

    SCANNED_DOCUMENT = "scanned document"
    DIGITIZED_FILM = "digitized film"
    SCANNED_IMAGE = "scanned image"
    VIDEO_FRAME = "video frame"
    FILE_IMPORT = "file import"


class EncodedFormat(enum.Enum):
    """Encoded originals that the dicomizer can keep as they are."""

    JPEG = "jpeg"
    PDF = "pdf"
    VIDEO = "video"  # a clip: the file at ``Capture.encoded_path`` (MP4, MKV ... or a raw H.264/HEVC stream)


@dataclass(frozen=True)
class Capture:
    """One acquired image or document.

    ``pixels``: H x W (gray) or H x W x 3 (RGB) array, dtype uint8, uint16 or
    bool (1-bit). ``bits_stored`` says how many bits of a uint16 are used
    (e.g. 12 or 16). ``encoded``/``encoded_format`` keep the original bytes
    (JPEG passthrough, PDF); a JPEG capture may carry both. A video clip
    (``EncodedFormat.VIDEO``) is a file on disk, ``encoded_path``, too large for
    memory, with ``video`` (its ``VideoFacts``) and its first frame as ``pixels``
    (the thumbnail); ``frame_rate`` is the clip's.
    """

    kind: SourceKind
    pixels: np.ndarray | None = None
    bits_stored: int | None = None
    encoded: bytes | None = None
    encoded_format: EncodedFormat | None = None
    dpi: float | None = None
    index: int = 0
    acquired_at: dt.datetime = field(default_factory=dt.datetime.now)
    source: str = ""
    frame_rate: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    encoded_path: Path | None = None
    video: "VideoFacts | None" = None

    def __post_init__(self) -> None:
        if self.pixels is None and self.encoded is None and self.encoded_path is None:
            raise ValueError("a capture needs pixels, encoded bytes or an encoded file")
        if (self.encoded_format is EncodedFormat.VIDEO) != (self.video is not None and self.encoded_path is not None):
            raise ValueError("a video clip needs its file (encoded_path), its facts (video) and EncodedFormat.VIDEO")
        if self.pixels is not None:
            shape, dtype = self.pixels.shape, self.pixels.dtype
            if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
                raise ValueError(f"pixels must be H x W or H x W x 3, not {shape}")
            if dtype not in (np.uint8, np.uint16, np.bool_):
                raise ValueError(f"pixels must be uint8, uint16 or bool, not {dtype}")
            if dtype == np.uint16 and len(shape) == 3:
                raise ValueError("16-bit pixels must be grayscale")
            if self.bits_stored is not None and not 1 <= self.bits_stored <= self.pixels.itemsize * 8:
                raise ValueError(f"bits_stored {self.bits_stored} does not fit {dtype}")

    @property
    def is_clip(self) -> bool:
        """A video clip (one object of many frames), not a still."""
        return self.encoded_format is EncodedFormat.VIDEO

    @property
    def is_color(self) -> bool:
        return self.pixels is not None and self.pixels.ndim == 3

    @property
    def effective_bits(self) -> int:
        """Bits actually used per sample (1 for bool, 8 for uint8, bits_stored or 16 for uint16)."""
        if self.pixels is None:
            return 8
        if self.pixels.dtype == np.bool_:
            return 1
        return self.bits_stored or self.pixels.itemsize * 8

    def with_pixels(self, pixels: np.ndarray, **changes: Any) -> "Capture":
        """A processed copy (rotated, cropped ...): new pixels, the encoded original dropped. The lossy
        step of a JPEG original goes into ``metadata["lossy_history"]``: the new pixels come from it."""
        metadata = changes.pop("metadata", self.metadata)
        step = self.jpeg_step()
        if step is not None:
            metadata = {**metadata, "lossy_history": [*metadata.get("lossy_history", []), step]}
        return replace(self, pixels=pixels, encoded=None, encoded_format=None, metadata=metadata, **changes)

    def jpeg_step(self) -> list | None:
        """``[ratio, "ISO_10918_1"]``: the lossy step of the JPEG original (``encoded``), None when
        there is none, it is lossless or unreadable."""
        if self.encoded_format is not EncodedFormat.JPEG or self.encoded is None:
            return None
        from kiosk.jpeg import JpegError, parse_jpeg

        try:
            info = parse_jpeg(self.encoded)
        except JpegError:
            return None
        if info.lossless:
            return None
        return [round(info.ratio(len(self.encoded)), 2), "ISO_10918_1"]
