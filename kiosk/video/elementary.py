"""A clip's video as the elementary stream DICOM holds (PS3.5 8.2.7-8.2.11): Annex B bytes, parameter sets in-band.

MP4, MOV and MKV files keep H.264/HEVC as length-prefixed NAL units with the parameter sets in the
container (avcC/hvcC): PyAV's bitstream filters (``h264_mp4toannexb``, ``hevc_mp4toannexb``) turn each
packet into start-code-prefixed NAL units, inserting the parameter sets before each IDR/IRAP picture. A raw
Annex B input (``.h264``, ``.hevc``, MPEG-TS) is copied as it is. Every part of a split clip starts at
an IDR picture with its parameter sets (added when the stream carries them only once), so that each
object decodes alone. Packets pass one at a time: memory stays flat whatever the length.

Frames are counted in decoding order, as ``kiosk.video.probe`` counts them (one packet, one frame).

H.264 in an MP4/MOV file, plain or fragmented (``kiosk.video.mp4index``), takes a faster road: the stream is the file's
samples with start codes for the NAL lengths (``kiosk.video.samplecopy``), never demuxed, and
``ClipPixelData.copy_into`` writes it into a Part 10 file, a buffer at a time, without pydicom.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from pydicom.encaps import EncapsulatedBuffer

from kiosk.video.facts import VideoError, VideoFacts
from kiosk.video.mp4index import Mp4Index, read_index
from kiosk.video.probe import open_container
from kiosk.video.samplecopy import SamplePlan, Unplannable, keyframes, plan

FILTERS = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}
START = b"\x00\x00\x01"
# Bytes a part may gain over its packets in the file: parameter sets before each keyframe, start codes
# one byte longer than some length prefixes (used only to skip reading files plainly small enough).
KEYFRAME_SLACK, FRAME_SLACK = 4096, 64


def _nal_type(codec: str, header: int) -> int:
    return header & 0x1F if codec == "h264" else (header >> 1) & 0x3F


def _is_vcl(codec: str, kind: int) -> bool:
    return 1 <= kind <= 5 if codec == "h264" else kind < 32


def _is_parameter_set(codec: str, kind: int) -> bool:
    return kind in (7, 8) if codec == "h264" else kind in (32, 33, 34)


def _is_idr(codec: str, kind: int) -> bool:
    """Decoding can start here and every later picture decodes: IDR (H.264 5, HEVC IDR_W_RADL/IDR_N_LP).
    An HEVC CRA is a keyframe too, but its leading (RASL) pictures need the pictures before it."""
    return kind == 5 if codec == "h264" else kind in (19, 20)


class _AccessUnit:
    """One packet in Annex B form, with what its NAL units before the first slice say."""

    __slots__ = ("data", "idr", "parameter_sets")

    def __init__(self, codec: str, data: bytes) -> None:
        self.data = data
        self.idr = False
        sets = []
        at = data.find(START)
        while at >= 0 and at + 3 < len(data):
            kind = _nal_type(codec, data[at + 3])
            if _is_vcl(codec, kind):  # the slices, nearly all the bytes, are never scanned
                self.idr = _is_idr(codec, kind)
                break
            following = data.find(START, at + 3)
            if _is_parameter_set(codec, kind):
                # Trailing zeros are the next unit's 4-byte start code; each set gets a 4-byte one of its own.
                end = len(data) if following < 0 else following
                sets.append(b"\x00" + data[at:end].rstrip(b"\x00"))
            at = following
        self.parameter_sets = b"".join(sets)


def _access_units(path: Path) -> Iterator[_AccessUnit]:
    """The first video stream's packets in decoding order, in Annex B form."""
    import av

    with open_container(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path.name}: holds no video stream", "choose a video file")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec not in FILTERS:
            raise VideoError(f"{path.name}: {codec} video cannot be stored as it is (DICOM stores H.264 and HEVC)",
                             "convert it to H.264 first (kiosk convert does)")
        extradata = stream.codec_context.extradata or b""
        # avcC/hvcC start with configurationVersion 1; Annex B extradata (or none) means Annex B packets.
        bsf = av.bitstream.BitStreamFilterContext(FILTERS[codec], stream) if extradata[:1] == b"\x01" else None
        try:
            for packet in container.demux(stream):
                if bsf is None:
                    if packet.size:
                        yield _AccessUnit(codec, bytes(packet))
                    continue
                for converted in bsf.filter(packet if packet.size else None):
                    if converted.size:
                        yield _AccessUnit(codec, bytes(converted))
        except av.FFmpegError as exc:
            raise VideoError(f"{path.name}: the video cannot be read to its end ({exc})",
                             "use a complete copy of the file") from None


def segments(path: str | os.PathLike[str], max_bytes: int, facts: VideoFacts | None = None) -> list[tuple[int, int]]:
    """Frame ranges [first, end) covering the clip in order, each starting at an IDR picture and each
    whose elementary stream (``write_elementary``) is at most ``max_bytes``; a group of pictures larger
    than that is a range of its own. With the clip's ``facts``, a file plainly small enough is not read."""
    return [(first, end) for first, end, _ in parts(path, max_bytes, facts)]


def parts(path: str | os.PathLike[str], max_bytes: int,
          facts: VideoFacts | None = None) -> list[tuple[int, int, int | None]]:
    """``segments`` with each range's stream size in bytes (None when the file was not read)."""
    path = Path(path)
    if facts is not None and path.stat().st_size + len(facts.keyframes) * KEYFRAME_SLACK \
            + facts.frames * FRAME_SLACK <= max_bytes:
        return [(0, facts.frames, None)]
    index = _plannable(path)
    groups = _indexed_groups(path, index) if index is not None else None
    if groups is None:
        groups = _demuxed_groups(path)
    frames = groups[-1][3] if groups else 0
    if not frames:
        raise VideoError(f"{path.name}: the video stream has no frames", "check that the file is not cut short")
    ranges: list[tuple[int, int, int | None]] = []
    first, size = 0, 0
    for start, length, added, _ in groups:
        if start and size + length > max_bytes:
            ranges.append((first, start, size))
            first, size = start, added
        size += length
    ranges.append((first, frames, size))
    return ranges


def _plannable(path: Path) -> Mp4Index | None:
    """The MP4 index of ``path`` when its stream can be made from the samples (H.264 with avcC)."""
    index = read_index(path)
    return index if index is not None and index.codec == "h264" and index.parameter_sets else None


def _indexed_groups(path: Path, index: Mp4Index) -> list[list[int]] | None:
    """``_demuxed_groups`` from the sample table and the keyframes' NAL headers (a part starting at an
    IDR picture gets the parameter sets there like any other IDR picture: nothing is added)."""
    try:
        marks = keyframes(path, index)
    except Unplannable:
        return None
    firsts = sorted({0, *marks})
    sets = len(index.parameter_sets)
    return [[first, sum(index.sizes[first:end]) + (sets if marks.get(first) is not None else 0), 0, end]
            for first, end in zip(firsts, [*firsts[1:], index.frames])]


def _demuxed_groups(path: Path) -> list[list[int]]:
    """Groups of pictures: [first frame, bytes, bytes added when a part starts there, frames up to its end]."""
    groups: list[list[int]] = []
    known_sets = b""
    for index, unit in enumerate(_access_units(path)):
        if not groups or unit.idr:
            groups.append([index, 0, 0 if unit.parameter_sets else len(known_sets), 0])
        groups[-1][1] += len(unit.data)
        groups[-1][3] = index + 1
        known_sets = unit.parameter_sets or known_sets
    return groups


def write_elementary(path: str | os.PathLike[str], out: BinaryIO, first: int = 0, end: int | None = None) -> int:
    """Write frames [first, end) of the first video stream of ``path`` to ``out`` as an Annex B byte
    stream that decodes alone (``first`` should be where a ``segments`` range starts); the bytes written."""
    written = 0
    for piece in _source(Path(path), first, end)[0]:
        out.write(piece)
        written += len(piece)
    return written


def _source(path: Path, first: int, end: int | None) -> tuple[Iterator[bytes], SamplePlan | None]:
    """The pieces of frames [first, end), from the samples' plan when the file has one."""
    index = _plannable(path)
    made = plan(path, index, first, end) if index is not None else None
    return (made.pieces() if made is not None else _pieces(path, first, end)), made


def _pieces(path: Path, first: int, end: int | None) -> Iterator[bytes]:
    """The bytes of frames [first, end) in order: the parameter sets first when the stream has them
    only before earlier pictures, then each packet."""
    known_sets = b""
    for index, unit in enumerate(_access_units(path)):
        if end is not None and index >= end:
            return
        if index < first:
            known_sets = unit.parameter_sets or known_sets
            continue
        if index == first and not unit.parameter_sets and known_sets:
            yield known_sets
        yield unit.data


class ElementaryStream(io.BufferedIOBase):
    """Frames [first, end) of a clip's elementary stream as a read-only, seekable file made from the video
    file while it is read: pydicom's ``EncapsulatedBuffer`` copies it into a Part 10 file and neither
    memory (one packet at a time) nor a disk holds a copy. Its ``size`` is taken first (one reading pass,
    demuxing only, unless given: ``parts``; from the sample table when it has a ``plan``); reading at an
    earlier position starts again from the top."""

    def __init__(self, path: str | os.PathLike[str], first: int = 0, end: int | None = None,
                 size: int | None = None) -> None:
        super().__init__()
        self.path, self.first, self.end = Path(path), first, end
        pieces, self.plan = _source(self.path, first, end)
        if self.plan is not None:
            self.size = self.plan.size if size is None else size
        else:
            self.size = sum(map(len, pieces)) if size is None else size
        self._position = 0  # where the next read starts
        self._source: Iterator[bytes] | None = None
        self._at = 0  # the stream offset of _pending's first byte
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        left = max(self.size - self._position, 0)
        wanted = left if size is None or size < 0 else min(size, left)
        if self._source is None or self._position < self._at:
            self._restart()
        out = bytearray()
        while len(out) < wanted:
            if self._at + len(self._pending) <= self._position:  # before the wanted position: skipped
                self._at += len(self._pending)
                self._pending = memoryview(self._next())
                continue
            start = self._position - self._at
            taken = self._pending[start:start + wanted - len(out)]
            out += taken
            self._position += len(taken)
        if wanted and self._position == self.size and self._leftover():
            raise self._changed()
        return bytes(out)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()  # closes the video file
        super().close()

    def _restart(self) -> None:
        if self._source is not None:
            self._source.close()
        pieces = self.plan.pieces() if self.plan is not None else _pieces(self.path, self.first, self.end)
        self._source, self._at, self._pending = pieces, 0, memoryview(b"")

    def _next(self) -> bytes:
        piece = next(self._source, None)
        if piece is None:
            raise self._changed()
        return piece

    def _leftover(self) -> bool:
        """Whether the stream goes on past ``size`` (the file changed after it was measured)."""
        return self._at + len(self._pending) > self.size or next(self._source, None) is not None

    def _changed(self) -> VideoError:
        return VideoError(f"{self.path.name}: the video file changed while it was stored",
                          "leave clips alone until their objects are queued, then send again")


class ClipPixelData(EncapsulatedBuffer):
    """A clip object's Pixel Data: an empty Basic Offset Table and ``stream`` as its one fragment, read by
    pydicom when written; ``copy_into`` writes it without pydicom when the stream has a ``plan``."""

    def __init__(self, stream: ElementaryStream) -> None:
        super().__init__([stream], use_bot=False)
        self.stream = stream

    @property
    def copies_itself(self) -> bool:
        """Whether ``copy_into`` can write this value (the stream is made from an MP4's samples)."""
        return self.stream.plan is not None and self.stream.plan.size == self.stream.size

    @property
    def encoded_length(self) -> int:
        """The bytes ``copy_into`` writes: the stream and its framing."""
        head, tail = _framing(self.stream.size)
        return len(head) + self.stream.size + len(tail)

    def copy_into(self, target: int, digest: Any = None) -> None:
        """Append the encoded Pixel Data element (Explicit VR Little Endian, undefined length) to the file
        descriptor ``target`` at its end: the bytes pydicom writes, the stream made from the samples; with
        ``digest`` (a hashlib object) the bytes are fed to it too, in order."""
        stream, size = self.stream, self.stream.size
        if not self.copies_itself:
            raise ValueError("the stream has no plan of its size")
        head, tail = _framing(size)
        at = os.lseek(target, 0, os.SEEK_END)
        os.pwrite(target, head, at)
        if digest is not None:
            digest.update(head)
        stream.plan.copy(target, at + len(head), digest)
        os.pwrite(target, tail, at + len(head) + size)
        if digest is not None:
            digest.update(tail)


def _framing(size: int) -> tuple[bytes, bytes]:
    """The encapsulated Pixel Data element's bytes before and after a one-fragment stream of ``size`` bytes
    (Explicit VR Little Endian, undefined length; the fragment padded to an even length)."""
    padded = size + size % 2
    head = b"".join((b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff",  # (7FE0,0010) OB, undefined length
                     b"\xfe\xff\x00\xe0\x00\x00\x00\x00",  # the empty Basic Offset Table
                     b"\xfe\xff\x00\xe0", padded.to_bytes(4, "little")))
    return head, b"\x00" * (padded - size) + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
