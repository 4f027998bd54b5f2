"""The Multi-frame True Color SC a destination gets when it does not take a video object (``[video] fallback``).

Some archives take neither the video SOP classes (Video Endoscopic, Video
Photographic ...) nor the video transfer syntaxes (MPEG-4 AVC/H.264, HEVC,
MPEG-2). Such a destination gets the clip as a Multi-frame True Color
Secondary Capture: every frame decoded from the stream and encoded once as
JPEG Baseline (4:2:2, YBR_FULL_422), one JPEG per frame.

That is a new image (PS3.3 C.7.6.1.1.5): a SOP Instance UID of its own
(``identity``: a function of the original and the destination, so a re-send
repeats it and storage commitment asks for it), Image Type DERIVED, Lossy
Image Compression 01 with each step's ratio and method (the video's, then
ISO_10918_1), a Derivation Description and Code (DCM 113040 "Lossy
Compression") and a Source Image Sequence naming the video object (DCM 121330
"Lossy compressed predecessor"). Patient, study and series are the original's.

Memory stays flat whatever the clip's length: the stream goes from the file
to the decoder a fragment at a time, each frame is encoded as it comes and its
JPEG written to disk at once. The object is assembled in a private folder
under the one given (the outbox's, on disk: /tmp may be RAM) and removed when
the caller's block ends.
"""

from __future__ import annotations

import io
import logging
import shutil
import struct
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

from kiosk import lossy
from kiosk import transfer_syntaxes as tsx
from kiosk.errors import KioskError
from kiosk.private import private_dir, private_opener

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

MF_TRUE_COLOR_SC = "1.2.840.10008.5.1.4.1.1.7.4"
#: Video Endoscopic, Video Microscopic, Video Photographic Image Storage.
VIDEO_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.77.1.1.1", "1.2.840.10008.5.1.4.1.1.77.1.2.1",
                           "1.2.840.10008.5.1.4.1.1.77.1.4.1"})
SYNTAX = tsx.JPEG_BASELINE
TITLE = "Multi-frame True Color SC (JPEG)"
JPEG_QUALITY = 90  # as the kiosk's own JPEG Baseline objects (kiosk.dicomize.codecs.write_pixels)
LOSSY_PREDECESSOR = ("121330", "DCM", "Lossy compressed predecessor")  # PS3.16 CID 7202
#: FFmpeg's demuxer for the elementary stream of each video transfer syntax.
DEMUXERS = {**dict.fromkeys(("1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101"), "mpegvideo"),
            **dict.fromkeys(("1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.104"), "h264"),
            **dict.fromkeys(("1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108"), "hevc")}

_PIXEL_DATA = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian
_ITEM, _DELIMITER = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)
_TAG_LENGTH = struct.Struct("<HHI")
COPY_CHUNK = 1 << 20


class FallbackError(KioskError):
    """The video object cannot be made into its Multi-frame True Color SC (an undecodable stream, a header
    that does not describe it)."""


class Cancelled(Exception):
    """``cancel`` was set while the frames were being encoded."""


@dataclass(frozen=True)
class Fallback:
    """The Multi-frame True Color SC made of a video object: a Part 10 file in JPEG Baseline."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    size: int
    frames: int


def is_video(sop_class_uid: str, transfer_syntax: str | None) -> bool:
    """Whether an object is a clip a destination may refuse: a video SOP class, or a video transfer syntax."""
    return sop_class_uid in VIDEO_CLASSES or transfer_syntax in tsx.VIDEO_UIDS


def identity(original_uid: str, destination: str) -> tuple[str, str]:
    """(SOP Class UID, SOP Instance UID) of the fallback of ``original_uid`` sent to ``destination``."""
    return MF_TRUE_COLOR_SC, lossy.derived_uid(original_uid, destination, SYNTAX.uid)


def refusal(destination: str, sop_class_uid: str, transfer_syntax: str, class_refused: bool) -> str:
    """Why the video object itself cannot go: "pacs does not accept Video Endoscopic Image Storage"."""
    from pydicom.uid import UID

    what = UID(sop_class_uid).name
    if class_refused:
        return f"{destination} does not accept {what}"
    row = tsx.BY_UID.get(transfer_syntax)
    return f"{destination} does not accept {what} in {row.title if row else UID(transfer_syntax).name}"


def note(reason: str) -> str:
    """What the outbox entry says of a clip sent as its fallback: "sent as ... (JPEG): ``reason``"."""
    return f"sent as {TITLE}: {reason}"


@contextmanager
def fallback_file(source: BinaryIO, folder: Path, destination: str,
                  cancel: threading.Event | None = None) -> Iterator[Fallback]:
    """The fallback of the video object open as ``source`` (a Part 10 file at its start), for ``destination``.

    Made in a private temporary folder under ``folder`` and deleted when the block ends. Raises
    ``FallbackError`` when it cannot be made, ``Cancelled`` when ``cancel`` is set meanwhile.
    """
    private_dir(folder)
    work = Path(tempfile.mkdtemp(dir=folder))
    try:
        yield _make(source, work, destination, cancel)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _make(source: BinaryIO, work: Path, destination: str, cancel: threading.Event | None) -> Fallback:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        header = dcmread(source, stop_before_pixels=True)
    except (InvalidDicomError, ValueError, EOFError) as exc:
        raise FallbackError(f"its header cannot be read ({exc})") from None
    syntax = str(header.file_meta.TransferSyntaxUID)
    demuxer = DEMUXERS.get(syntax)
    if demuxer is None:
        raise FallbackError(f"its pixel data is not a video stream the kiosk decodes ({syntax})")
    fragments = _Fragments(source)
    frames_path = work / "frames"
    with open(frames_path, "xb", opener=private_opener) as out:
        offsets, jpeg_bytes = _encode_frames(fragments, demuxer, header, out, cancel)
    ds = _derive(header, destination, len(offsets), fragments.total, jpeg_bytes)
    path = work / "fallback.dcm"
    with open(path, "xb", opener=private_opener) as out:
        ds.save_as(out, enforce_file_format=True)
        out.write(_PIXEL_DATA + b"OB\0\0\xff\xff\xff\xff")
        # The Basic Offset Table has 32-bit offsets: empty (allowed, one fragment per frame) past 4 GB.
        table = struct.pack(f"<{len(offsets)}I", *offsets) if offsets[-1] < 1 << 32 else b""
        out.write(_TAG_LENGTH.pack(*_ITEM, len(table)) + table)
        with open(frames_path, "rb") as frames:
            shutil.copyfileobj(frames, out, COPY_CHUNK)
        out.write(_TAG_LENGTH.pack(*_DELIMITER, 0))
        size = out.tell()
    frames_path.unlink()
    log.info("made the %s of a video object for %s: %d frames, %.1f MB", TITLE, destination, len(offsets), size / 1e6)
    return Fallback(path, str(ds.SOPClassUID), str(ds.SOPInstanceUID), size, len(offsets))


class _Fragments(io.RawIOBase):
    """The elementary stream in an encapsulated Pixel Data: its fragments' bytes, read from the file as the
    decoder asks for them. ``source`` is positioned at the Pixel Data element; ``total`` counts the bytes."""

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self._source = source
        self._left = 0
        self._ended = False
        self.total = 0
        self.problem = ""  # why the stream ended early, if it did
        head = source.read(12)
        if len(head) < 12 or head[:4] != _PIXEL_DATA or head[8:] != b"\xff\xff\xff\xff":
            raise FallbackError("its pixel data is not encapsulated")
        tag, length = self._item()
        if tag != _ITEM:
            raise FallbackError("its pixel data has no Basic Offset Table")
        source.seek(length, io.SEEK_CUR)  # the table: frames of a video are not fragments

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "bytearray | memoryview") -> int:  # type: ignore[override]
        while not self._left:
            if self._ended:
                return 0
            tag, length = self._item()
            if tag == _DELIMITER:
                self._ended = True
            elif tag != _ITEM or length == 0xFFFFFFFF:
                self.problem, self._ended = "its pixel data is damaged (no fragment where one should be)", True
            else:
                self._left = length
        got = self._source.readinto(memoryview(buffer)[:min(len(buffer), self._left)])
        if not got:
            self.problem, self._ended, self._left = "its pixel data ends before its last fragment does", True, 0
            return 0
        self._left -= got
        self.total += got
        return got

    def _item(self) -> tuple[tuple[int, int], int]:
        head = self._source.read(8)
        if len(head) < 8:
            return (0, 0), 0
        group, element, length = _TAG_LENGTH.unpack(head)
        return (group, element), length


def _encode_frames(fragments: _Fragments, demuxer: str, header: "Dataset", out: BinaryIO,
                   cancel: threading.Event | None) -> tuple[list[int], int]:
    """Decode the stream frame by frame, writing each as a JPEG item to ``out``; (item offsets, JPEG bytes)."""
    import av
    from PIL import Image

    rows, columns = int(header.Rows), int(header.Columns)
    expected = int(header.get("NumberOfFrames", 0) or 0)
    offsets: list[int] = []
    position = jpeg_bytes = 0
    try:
        with av.open(fragments, format=demuxer) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads: the decoder keeps up with the JPEG encoder
            for frame in container.decode(stream):
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                rgb = frame.to_ndarray(format="rgb24")
                if rgb.shape[:2] != (rows, columns):
                    raise FallbackError(f"its stream holds {rgb.shape[1]}x{rgb.shape[0]} frames, its header says "
                                        f"{columns}x{rows}")
                encoded = io.BytesIO()
                # subsampling=1 is 4:2:2, the only subsampling YBR_FULL_422 describes exactly.
                Image.fromarray(rgb).save(encoded, "JPEG", quality=JPEG_QUALITY, subsampling=1, optimize=False)
                data = encoded.getbuffer()
                padding = b"\0" if len(data) % 2 else b""
                out.write(_TAG_LENGTH.pack(*_ITEM, len(data) + len(padding)))
                out.write(data)
                out.write(padding)
                offsets.append(position)
                position += 8 + len(data) + len(padding)
                jpeg_bytes += len(data)
    except av.FFmpegError as exc:
        raise FallbackError(fragments.problem or f"its video stream cannot be decoded ({exc})") from None
    if fragments.problem:
        raise FallbackError(fragments.problem)
    if not offsets:
        raise FallbackError("its video stream holds no frame")
    if expected and len(offsets) != expected:
        raise FallbackError(f"its video stream holds {len(offsets)} frames, its header says {expected}")
    return offsets, jpeg_bytes


def _derive(header: "Dataset", destination: str, frames: int, stream_bytes: int, jpeg_bytes: int) -> "Dataset":
    """The fallback's data set (no Pixel Data yet) from the video object's ``header``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence

    from kiosk.dicomize.codecs import set_lossy
    from kiosk.part10 import set_file_meta

    ds = header
    syntax = str(ds.file_meta.TransferSyntaxUID)
    original_class, original_uid = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):  # they describe the video's fragments
        if keyword in ds:
            delattr(ds, keyword)
    if "FrameTime" not in ds and "FrameTimeVector" not in ds:
        raise FallbackError("its header has neither Frame Time nor Frame Time Vector (the frames' timing)")
    ds.SOPClassUID, ds.SOPInstanceUID = identity(original_uid, destination)
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00181063 if "FrameTime" in ds else 0x00181065
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = SYNTAX.rgb_as
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    # SC Equipment: made by this station from a DICOM object (an original SC keeps its own, e.g. DV).
    ds.ConversionType = ds.get("ConversionType") or "WSD"
    if "BurnedInAnnotation" not in ds:
        ds.BurnedInAnnotation = "YES"  # not known of a video object: assume there may be (e.g. an endoscope's)
    raw = int(header.Rows) * int(header.Columns) * 3 * frames
    history = _video_history(ds, syntax, raw / max(stream_bytes, 1))
    jpeg_ratio = raw / max(jpeg_bytes, 1)
    set_lossy(ds, [*history, (jpeg_ratio, SYNTAX.method)])
    ds.ImageType = ["DERIVED", *(lossy.values(ds, "ImageType")[1:] or ["SECONDARY"])]
    step = (f"Frames of the video in Source Image Sequence decoded and compressed as JPEG Baseline "
            f"({jpeg_ratio:.1f}:1) for a destination that does not take the video")
    ds.DerivationDescription = "; ".join(filter(None, [ds.get("DerivationDescription", ""), step]))[:1024]
    ds.DerivationCodeSequence = Sequence([*ds.get("DerivationCodeSequence", []), lossy.code(lossy.LOSSY_COMPRESSION)])
    reference = Dataset()
    reference.ReferencedSOPClassUID = original_class
    reference.ReferencedSOPInstanceUID = original_uid
    reference.PurposeOfReferenceCodeSequence = Sequence([lossy.code(LOSSY_PREDECESSOR)])
    ds.SourceImageSequence = Sequence([*ds.get("SourceImageSequence", []), reference])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = SYNTAX.uid
    set_file_meta(ds)
    return ds


def _video_history(ds: "Dataset", syntax: str, ratio: float) -> list[tuple[float | None, str | None]]:
    """The lossy steps the video's pixels went through, its own encoding last (with ``ratio`` when its
    header does not give that step's)."""
    methods = [str(m) for m in lossy.values(ds, "LossyImageCompressionMethod")]
    ratios: list[float | None] = [float(r) for r in lossy.values(ds, "LossyImageCompressionRatio")]
    own = tsx.BY_UID[syntax].method
    if not methods:
        return [(ratio, own)]
    if len(ratios) == len(methods) - 1 and methods[-1] == own:
        ratios.append(ratio)
    if len(ratios) != len(methods):
        ratios = [None] * len(methods)  # steps and ratios do not pair up: the ratios are left out
    return list(zip(ratios, methods))
