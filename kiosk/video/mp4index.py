"""The samples of an MP4/MOV file's first video track, read from its moov box and, in a fragmented file
(the recorder's), its moof boxes (ISO/IEC 14496-12, -15).

``read_index`` reads the boxes with ``struct`` (the moov and moof boxes only, never the media data), so
that the kiosk knows a clip's frames, keyframes and duration, and where each sample's bytes are, without
demuxing it: ``kiosk.video.probe`` and ``kiosk.video.samplecopy`` use it. It returns None for anything it
does not plainly understand, and the caller takes the PyAV path: NAL length prefixes other than 4 bytes,
a sample table that is missing or says more than the file holds (a copy cut short, or a recording the
kiosk did not finish: whose messages the demuxing path gives), edit lists of more than one edit, sample
groups, a track fragment whose data offset is implied by another track's.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from collections import OrderedDict
from array import array
from dataclasses import dataclass

# Sample entry types -> codec; the entry's child boxes follow its 78-byte VisualSampleEntry fields.
ENTRIES = {b"avc1": "h264", b"avc3": "h264", b"hvc1": "hevc", b"hev1": "hevc"}
VISUAL_ENTRY = 8 + 78
MOOV_MAX = 256 << 20  # moov and moof boxes larger than this together are not a clip's (they are read into memory)
# What an ISO base media file may start with; anything else (Matroska, a raw stream) is not read further.
FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"}
BOX_READ = 4096  # bytes: a top-level box header, and a recording's moof box whole with the next header
KEPT_INDEXES = 4  # a 30-minute 30 fps clip's index is about 1 MB


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


_KEPT: OrderedDict[tuple[int, ...], "Mp4Index | None"] = OrderedDict()  # by file identity, the latest last
_KEPT_LOCK = threading.Lock()  # the recorder, the UI and the sender probe and copy clips from their threads


class _Refused(Exception):
    """Something ``read_index`` does not handle: the caller demuxes instead."""


def read_index(path: str | os.PathLike[str]) -> Mp4Index | None:
    """The index of ``path``'s first video track, or None when the file is not a complete MP4/MOV (plain
    or fragmented) with H.264 or HEVC in 4-byte length-prefixed NAL units. The last few files' indexes
    are kept: a clip is probed, then planned, then copied, and a recording is moved into the session."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    # The same file while it keeps its size and modification time, wherever it was moved; changed, it is read again.
    identity = (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)
    with _KEPT_LOCK:
        if identity in _KEPT:
            _KEPT.move_to_end(identity)
            return _KEPT[identity]
    index = _read(path)
    with _KEPT_LOCK:
        _KEPT[identity] = index
        while len(_KEPT) > KEPT_INDEXES:
            _KEPT.popitem(last=False)
    return index


def _read(path: str | os.PathLike[str]) -> Mp4Index | None:
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            moov, fragments = _top_level(handle.fileno(), size)
            return _index(moov, fragments, size)
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


def _top_level(fd: int, size: int) -> tuple[bytes, list[tuple[int, bytes]]]:
    """The moov box's payload and each moof box (its file offset, the box whole), the top-level boxes
    walked by their headers (the media data is skipped). A recording has a moof and an mdat box a
    second: each moof and the next box's header come with the one read of ``BOX_READ`` bytes (one system
    call a fragment, not three: each lets the other threads take the interpreter)."""
    at, moov, fragments, read = 0, None, [], 0
    block, block_at = b"", 0
    while at + 8 <= size:
        if not block_at <= at <= block_at + len(block) - 16:
            block, block_at = os.pread(fd, BOX_READ, at), at
        head = block[at - block_at:at - block_at + 16]
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
        if kind in (b"moov", b"moof"):
            read += length
            if (kind == b"moov" and moov is not None) or read > MOOV_MAX:
                raise _Refused("moov")
            if at + length <= block_at + len(block):
                data = block[at - block_at:at - block_at + length]
            else:
                data = os.pread(fd, length, at)
                if len(data) != length:
                    raise _Refused("the file changed while it was read")
            if kind == b"moov":
                moov = data[16 if box == 1 else 8:]
            else:
                fragments.append((at, data))
        at += length
    if moov is None:
        raise _Refused("no moov box")
    return moov, fragments


def _children(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    found: dict[bytes, tuple[int, int]] = {}
    for kind, begin, stop in _boxes(data, start, end):
        found.setdefault(kind, (begin, stop))
    return found


class _Samples:
    """A track's samples in decoding order as the boxes list them: where, how long, which are keyframes,
    and when each ends on screen (in the track's timescale, before the edit list)."""

    def __init__(self) -> None:
        self.offsets, self.sizes = array("Q"), array("I")
        self.sync: list[int] = []
        self.has_ctts = False
        self.end = 0
        self.next_time = 0  # the decoding time of the next sample

    def timed(self, duration: int, composition: int) -> None:
        """The next sample's duration and composition offset."""
        self.end = max(self.end, self.next_time + composition + duration)
        self.next_time += duration


def _index(moov: bytes, fragments: list[tuple[int, bytes]], file_size: int) -> Mp4Index:
    top = _children(moov, 0, len(moov))
    for kind, start, end in _boxes(moov):
        if kind != b"trak":
            continue
        trak = _children(moov, start, end)
        mdia = _children(moov, *trak[b"mdia"])
        begin, _ = mdia[b"hdlr"]
        if moov[begin + 8:begin + 12] != b"vide":
            continue
        return _track(moov, top, trak, mdia, fragments, file_size)
    raise _Refused("no video track")


def _track(moov: bytes, top: dict, trak: dict, mdia: dict, fragments: list[tuple[int, bytes]],
           file_size: int) -> Mp4Index:
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
    samples = _Samples()
    _table_samples(moov, stbl, samples)
    if b"mvex" in top:
        defaults = _trex(moov, top[b"mvex"], track_id)
        for moof_at, moof in fragments:
            _fragment_samples(moof_at, moof, track_id, defaults, samples)
    count = len(samples.sizes)
    if not count:
        raise _Refused("no samples")
    if max(o + s for o, s in zip(samples.offsets, samples.sizes)) > file_size:
        raise _Refused("samples past the end of the file")
    shift, has_edits = _edit(moov, trak)
    return Mp4Index(track_id=track_id, codec=codec, offsets=samples.offsets, sizes=samples.sizes,
                    sync=tuple(samples.sync) or (0,), end_time=(samples.end - shift) / timescale,
                    has_ctts=samples.has_ctts, has_edits=has_edits, parameter_sets=parameter_sets)


def _table_samples(moov: bytes, stbl: dict, samples: _Samples) -> None:
    """The samples the moov box's sample table lists (none in a fragmented file's empty moov)."""
    sizes = _sizes(moov, stbl)
    count = len(sizes)
    if not count:
        return
    samples.sizes, samples.offsets = sizes, _offsets(moov, stbl, sizes)
    sync = [i - 1 for i in _table(moov, *stbl[b"stss"], 1)] if b"stss" in stbl else list(range(count))
    if any(not 0 <= i < count for i in sync):
        raise _Refused("stss")
    samples.sync = sync
    samples.has_ctts = b"ctts" in stbl
    composition = _expand(_table(moov, *stbl[b"ctts"], 2, signed=moov[stbl[b"ctts"][0]] == 1), count) \
        if samples.has_ctts else [0] * count
    for duration, offset in zip(_expand(_table(moov, *stbl[b"stts"], 2), count), composition):
        samples.timed(duration, offset)


# Track fragment header (tfhd) and run (trun) flags, ISO/IEC 14496-12 8.8.7, 8.8.8.
BASE_OFFSET, DESCRIPTION, DURATION, SIZE, FLAGS, BASE_IS_MOOF = 0x1, 0x2, 0x8, 0x10, 0x20, 0x20000
DATA_OFFSET, FIRST_FLAGS, SAMPLE_DURATION, SAMPLE_SIZE, SAMPLE_FLAGS, SAMPLE_COMPOSITION = \
    0x1, 0x4, 0x100, 0x200, 0x400, 0x800
NON_SYNC = 0x10000  # sample_is_non_sync_sample, in the sample flags


def _trex(moov: bytes, mvex: tuple[int, int], track_id: int) -> tuple[int, int, int]:
    """The track's default sample duration, size and flags for its fragments (its trex box)."""
    for kind, start, _ in _boxes(moov, *mvex):
        if kind == b"trex" and struct.unpack_from(">I", moov, start + 4)[0] == track_id:
            return struct.unpack_from(">III", moov, start + 12)
    raise _Refused("no trex for the video track")


def _fragment_samples(moof_at: int, moof: bytes, track_id: int, defaults: tuple[int, int, int],
                      samples: _Samples) -> None:
    """Append the samples one moof box (at file offset ``moof_at``) lists for the track."""
    first = True
    for kind, start, end in _boxes(moof, 16 if struct.unpack_from(">I", moof)[0] == 1 else 8, len(moof)):
        if kind != b"traf":
            continue
        traf = _children(moof, start, end)
        begin, _ = traf[b"tfhd"]
        flags = int.from_bytes(moof[begin + 1:begin + 4], "big")
        leading, first = first, False
        if struct.unpack_from(">I", moof, begin + 4)[0] != track_id:
            continue
        at = begin + 8
        if flags & BASE_OFFSET:
            base = struct.unpack_from(">Q", moof, at)[0]
            at += 8
        elif flags & BASE_IS_MOOF or leading:  # the first traf's data is based at its moof
            base = moof_at
        else:
            raise _Refused("a traf based on the one before it")
        if flags & DESCRIPTION:
            at += 4
        if b"tfdt" in traf:  # where the fragment starts on the track's time line
            begin, _ = traf[b"tfdt"]
            samples.next_time = struct.unpack_from(">Q" if moof[begin] == 1 else ">I", moof, begin + 4)[0]
        found = []
        for flag, default in zip((DURATION, SIZE, FLAGS), defaults):
            found.append(struct.unpack_from(">I", moof, at)[0] if flags & flag else default)
            at += 4 if flags & flag else 0
        offset = base
        for kind_, run_start, run_end in _boxes(moof, start, end):
            if kind_ == b"trun":
                offset = _run(moof, run_start, run_end, base, offset, tuple(found), samples)


def _run(moof: bytes, start: int, end: int, base: int, offset: int, defaults: tuple[int, int, int],
         samples: _Samples) -> int:
    """Append one trun box's samples; where the next run's data starts when it gives no offset."""
    version, flags = moof[start], int.from_bytes(moof[start + 1:start + 4], "big")
    count = struct.unpack_from(">I", moof, start + 4)[0]
    at = start + 8
    if flags & DATA_OFFSET:
        offset = base + struct.unpack_from(">i", moof, at)[0]
        at += 4
    first_flags = None
    if flags & FIRST_FLAGS:
        first_flags = struct.unpack_from(">I", moof, at)[0]
        at += 4
    fields = [(flag, "i" if flag == SAMPLE_COMPOSITION and version else "I")
              for flag in (SAMPLE_DURATION, SAMPLE_SIZE, SAMPLE_FLAGS, SAMPLE_COMPOSITION) if flags & flag]
    if at + 4 * len(fields) * count > end:
        raise _Refused("trun past its box")
    layout = ">" + "".join(code for _, code in fields)
    duration, size, sample_flags = defaults
    number = len(samples.sizes)
    for i in range(count):
        values = dict(zip((flag for flag, _ in fields), struct.unpack_from(layout, moof, at + 4 * len(fields) * i)))
        length = values.get(SAMPLE_SIZE, size)
        kept = values.get(SAMPLE_FLAGS, first_flags if i == 0 and first_flags is not None else sample_flags)
        samples.offsets.append(offset)
        samples.sizes.append(length)
        samples.timed(values.get(SAMPLE_DURATION, duration), values.get(SAMPLE_COMPOSITION, 0))
        if not kept & NON_SYNC:
            samples.sync.append(number + i)
        offset += length
    samples.has_ctts = samples.has_ctts or bool(flags & SAMPLE_COMPOSITION)
    return offset


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
