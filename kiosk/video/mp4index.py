"""The sample table of an MP4/MOV file's first video track, read from its moov box (ISO/IEC 14496-12, -15).

``read_index`` reads the boxes with ``struct`` (the moov box only, never the media data), so that the
kiosk knows a clip's frames, keyframes and duration, and where each sample's bytes are, without demuxing
it: ``kiosk.video.probe`` and ``kiosk.video.kernel_copy`` use it. It returns None for anything it does not
plainly understand, and the caller takes the PyAV path: a fragmented file (moof boxes: the recorder's),
NAL length prefixes other than 4 bytes, a sample table that is missing or says more than the file holds
(a copy cut short, whose messages the demuxing path gives), edit lists of more than one edit, sample groups.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from dataclasses import dataclass
from pathlib import Path

# Sample entry types -> codec; the entry's child boxes follow its 78-byte VisualSampleEntry fields.
ENTRIES = {b"avc1": "h264", b"avc3": "h264", b"hvc1": "hevc", b"hev1": "hevc"}
VISUAL_ENTRY = 8 + 78
MOOV_MAX = 256 << 20  # a moov box larger than this is not a clip's (its tables are read into memory)
# What an ISO base media file may start with; anything else (Matroska, a raw stream) is not read further.
FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"}


@dataclass(frozen=True)
class Mp4Index:
    """The first video track's samples, in decoding order (one sample, one frame, as PyAV's packets)."""

    track_id: int
    codec: str  # "h264" or "hevc"
    offsets: array  # each sample's file offset
    sizes: array  # and its length in bytes
    sync: tuple[int, ...]  # the sync samples (0-based); every sample when the file has no stss
    end_time: float  # the end of the last sample shown, s (presentation times, the edit applied)
    has_ctts: bool  # pictures reordered (B-frames)
    has_edits: bool
    parameter_sets: bytes  # from avcC/hvcC, Annex B with 4-byte start codes, in the record's order

    @property
    def frames(self) -> int:
        return len(self.sizes)


class _Refused(Exception):
    """Something ``read_index`` does not handle: the caller demuxes instead."""


def read_index(path: str | os.PathLike[str]) -> Mp4Index | None:
    """The index of ``path``'s first video track, or None when the file is not a plain (unfragmented,
    complete) MP4/MOV with H.264 or HEVC in 4-byte length-prefixed NAL units."""
    try:
        with open(Path(path), "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            moov = _moov(handle, size)
            return _index(moov, size)
    except (OSError, _Refused, struct.error, IndexError, ValueError):
        return None


def _boxes(data: bytes | memoryview, start: int = 0, end: int | None = None):
    """(type, payload start, payload end) of each box in data[start:end]."""
    end = len(data) if end is None else end
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        head = 8
        if size == 1:
            size, head = struct.unpack_from(">Q", data, at + 8)[0], 16
        elif size == 0:
            size = end - at
        if size < head or at + size > end:
            raise _Refused(f"box {kind!r} runs past its parent")
        yield kind, at + head, at + size
        at += size


def _moov(handle, size: int) -> bytes:
    """The moov box's payload, the top-level boxes walked by their headers (the media data is skipped)."""
    at, moov = 0, None
    while at + 8 <= size:
        handle.seek(at)
        head = handle.read(16)
        box, kind = struct.unpack_from(">I4s", head)
        length = box
        if box == 1:
            length = struct.unpack_from(">Q", head, 8)[0]
        elif box == 0:
            length = size - at
        if at == 0 and kind not in FIRST_BOXES:
            raise _Refused("not an ISO base media file")
        if length < 8 or at + length > size:
            raise _Refused("a top-level box runs past the end of the file")  # cut short
        if kind in (b"moof", b"mfra"):
            raise _Refused("fragmented")
        if kind == b"moov":
            if moov is not None or length > MOOV_MAX:
                raise _Refused("moov")
            handle.seek(at)
            moov = handle.read(length)
            moov = moov[16 if box == 1 else 8:]
        at += length
    if moov is None:
        raise _Refused("no moov box")
    return moov


def _children(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    found: dict[bytes, tuple[int, int]] = {}
    for kind, begin, stop in _boxes(data, start, end):
        found.setdefault(kind, (begin, stop))
    return found


def _index(moov: bytes, file_size: int) -> Mp4Index:
    top = _children(moov, 0, len(moov))
    if b"mvex" in top:
        raise _Refused("fragmented")
    for kind, start, end in _boxes(moov):
        if kind != b"trak":
            continue
        trak = _children(moov, start, end)
        mdia = _children(moov, *trak[b"mdia"])
        begin, _ = mdia[b"hdlr"]
        if moov[begin + 8:begin + 12] != b"vide":
            continue
        return _track(moov, trak, mdia, file_size)
    raise _Refused("no video track")


def _track(moov: bytes, trak: dict, mdia: dict, file_size: int) -> Mp4Index:
    begin, _ = trak[b"tkhd"]
    track_id = struct.unpack_from(">I", moov, begin + (20 if moov[begin] == 1 else 12))[0]
    begin, _ = mdia[b"mdhd"]
    timescale = struct.unpack_from(">I", moov, begin + (20 if moov[begin] == 1 else 12))[0]
    if not timescale:
        raise _Refused("mdhd")
    stbl = _children(moov, *_children(moov, *mdia[b"minf"])[b"stbl"])
    if b"sbgp" in stbl:
        raise _Refused("sample groups")  # e.g. random access points outside stss, as FFmpeg reads them
    codec, parameter_sets = _sample_entry(moov, *stbl[b"stsd"])
    sizes = _sizes(moov, stbl)
    count = len(sizes)
    if not count:
        raise _Refused("no samples")
    offsets = _offsets(moov, stbl, sizes)
    if max(o + s for o, s in zip(offsets, sizes)) > file_size:
        raise _Refused("samples past the end of the file")
    sync = tuple(i - 1 for i in _table(moov, *stbl[b"stss"], 1)) if b"stss" in stbl else tuple(range(count))
    if any(not 0 <= i < count for i in sync):
        raise _Refused("stss")
    deltas = _expand(_table(moov, *stbl[b"stts"], 2), count)
    offsets_ct = _expand(_table(moov, *stbl[b"ctts"], 2, signed=moov[stbl[b"ctts"][0]] == 1), count) \
        if b"ctts" in stbl else None
    shift, has_edits = _edit(moov, trak)
    dts, end = 0, 0
    for i, delta in enumerate(deltas):
        pts = dts + (offsets_ct[i] if offsets_ct is not None else 0) - shift
        end = max(end, pts + delta)
        dts += delta
    return Mp4Index(track_id=track_id, codec=codec, offsets=offsets, sizes=sizes, sync=sync or (0,),
                    end_time=end / timescale, has_ctts=offsets_ct is not None, has_edits=has_edits,
                    parameter_sets=parameter_sets)


def _table(data: bytes, start: int, end: int, columns: int, signed: bool = False) -> array:
    """A full box's table of 32-bit big-endian numbers after its entry count."""
    count = struct.unpack_from(">I", data, start + 4)[0]
    first = start + 8
    if first + 4 * columns * count > end:
        raise _Refused("table past its box")
    values = array("i" if signed else "I", data[first:first + 4 * columns * count])
    if sys.byteorder == "little":
        values.byteswap()
    return values


def _expand(pairs: array, count: int) -> list[int]:
    """(run length, value) pairs (stts, ctts) as one value per sample."""
    values: list[int] = []
    for i in range(0, len(pairs), 2):
        values.extend([pairs[i + 1]] * pairs[i])
    if len(values) < count:
        raise _Refused("time table shorter than the samples")
    return values[:count]


def _sizes(moov: bytes, stbl: dict) -> array:
    if b"stsz" not in stbl:
        raise _Refused("no stsz")  # stz2 (compact sizes) is rare: demuxed
    start, end = stbl[b"stsz"]
    uniform, count = struct.unpack_from(">II", moov, start + 4)
    if uniform:
        return array("I", [uniform]) * count
    if start + 12 + 4 * count > end:
        raise _Refused("stsz")
    sizes = array("I", moov[start + 12:start + 12 + 4 * count])
    if sys.byteorder == "little":
        sizes.byteswap()
    return sizes


def _offsets(moov: bytes, stbl: dict, sizes: array) -> array:
    """Each sample's file offset, from the chunk offsets and the sample-to-chunk table."""
    if b"stco" in stbl:
        chunks = _table(moov, *stbl[b"stco"], 1)
    else:
        start, end = stbl[b"co64"]
        count = struct.unpack_from(">I", moov, start + 4)[0]
        if start + 8 + 8 * count > end:
            raise _Refused("co64")
        chunks = array("Q", moov[start + 8:start + 8 + 8 * count])
        if sys.byteorder == "little":
            chunks.byteswap()
    runs = _table(moov, *stbl[b"stsc"], 3)
    offsets = array("Q")
    sample = 0
    for r in range(0, len(runs), 3):
        first_chunk, per_chunk = runs[r], runs[r + 1]
        last_chunk = runs[r + 3] if r + 3 < len(runs) else len(chunks) + 1
        for chunk in range(first_chunk, last_chunk):
            at = chunks[chunk - 1]
            for _ in range(per_chunk):
                if sample == len(sizes):
                    break
                offsets.append(at)
                at += sizes[sample]
                sample += 1
    if sample != len(sizes):
        raise _Refused("chunks hold fewer samples than stsz lists")
    return offsets


def _edit(moov: bytes, trak: dict) -> tuple[int, bool]:
    """The media time the presentation starts at (one edit), and whether the track has an edit list."""
    if b"edts" not in trak:
        return 0, False
    edts = _children(moov, *trak[b"edts"])
    if b"elst" not in edts:
        return 0, False
    start, _ = edts[b"elst"]
    version = moov[start]
    count = struct.unpack_from(">I", moov, start + 4)[0]
    if count == 0:
        return 0, False
    if count != 1:
        raise _Refused("edit list of several edits")
    media_time = struct.unpack_from(">q" if version == 1 else ">i", moov, start + 8 + (8 if version == 1 else 4))[0]
    if media_time < 0:
        raise _Refused("empty edit")
    return media_time, True


def _sample_entry(moov: bytes, start: int, end: int) -> tuple[str, bytes]:
    """The codec of the first sample description and its parameter sets in Annex B form."""
    entries = list(_boxes(moov, start + 8, end))
    if not entries:
        raise _Refused("stsd")
    kind, begin, stop = entries[0]
    if kind not in ENTRIES:
        raise _Refused(f"sample entry {kind!r}")
    config = _children(moov, begin - 8 + VISUAL_ENTRY, stop)
    if ENTRIES[kind] == "h264":
        return "h264", _avcc(moov, *config[b"avcC"])
    return "hevc", _hvcc(moov, *config[b"hvcC"])


def _annex_b(units: list[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in units)


def _avcc(data: bytes, start: int, end: int) -> bytes:
    record = data[start:end]
    if record[0] != 1 or (record[4] & 3) != 3:
        raise _Refused("avcC version or NAL length size")
    sps, at = _units(record, 6, record[5] & 0x1F)  # then the picture parameter sets, counted in one byte
    pps, at = _units(record, at + 1, record[at])
    if at > len(record):
        raise _Refused("avcC")
    return _annex_b(sps + pps)


def _hvcc(data: bytes, start: int, end: int) -> bytes:
    record = data[start:end]
    if record[0] != 1 or (record[21] & 3) != 3:
        raise _Refused("hvcC version or NAL length size")
    units, at = [], 23
    for _ in range(record[22]):  # arrays of VPS, SPS, PPS ...: a type byte and a 16-bit count each
        found, at = _units(record, at + 3, struct.unpack_from(">H", record, at + 1)[0])
        units += found
    if at > len(record):
        raise _Refused("hvcC")
    return _annex_b(units)


def _units(record: bytes, at: int, count: int) -> tuple[list[bytes], int]:
    """``count`` NAL units, each after its 16-bit length, from ``at``; and where the next field starts."""
    units = []
    for _ in range(count):
        length = struct.unpack_from(">H", record, at)[0]
        units.append(record[at + 2:at + 2 + length])
        at += 2 + length
    return units, at
