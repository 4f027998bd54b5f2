"""The Annex B stream of frames of an MP4/MOV file's H.264 track, made from the samples without demuxing.

An MP4 sample is its NAL units, each after a 4-byte big-endian length; the Annex B form is the same bytes
with each length replaced by a 4-byte start code (00 00 00 01), and the parameter sets (from avcC) put
before each IDR picture that does not carry its own, as FFmpeg's ``h264_mp4toannexb`` does (FFmpeg
gives NAL units after the first of a packet 3-byte start codes; the 4-byte form is as valid and keeps
each sample's length). The stream's size is known from the sample table and the first NAL headers of
each sync sample alone (``keyframes``): a ``SamplePlan`` lists the stream as runs of the file's bytes
and inserted parameter sets. ``pieces`` reads the runs into a buffer a block at a time and walks the
NAL lengths there, writing the start codes over them and checking that they add up to each sample: the
clip is read once, not once to plan and once to copy (on a slow disk, or a clip that has left the page
cache, a second pass is a second read of the whole clip). ``copy`` writes each block into a file with
one call, a second thread hashing it meanwhile for the outbox's spool. Few large calls matter more than
saving the pass through memory: each system call lets the other threads take the interpreter, and the
55,000 calls of a copy by the kernel with each header read and each start code written on its own each
waited for them (a 590 MB clip queued in 20-27 s beside a thread computing in Python).
"""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from kiosk.pagecache import Writeback
from kiosk.video.facts import VideoError
from kiosk.video.mp4index import Mp4Index

START_CODE = b"\x00\x00\x00\x01"
IDR, SPS, PPS = 5, 7, 8
READ_CHUNK = 4 << 20  # bytes: one read, one hash update and one write each
HEADER_BLOCK = 64 << 10  # bytes read for a keyframe's first NAL headers (an SEI, the sets, the first slice)


@dataclass(frozen=True)
class SamplePlan:
    """Frames [first, end) of ``path`` (samples of ``index``) as Annex B: ``runs`` (file offset, length)
    or (-1, 0) for the parameter sets, in output order; ``size``: the stream's bytes."""

    path: Path
    index: Mp4Index
    first: int
    end: int
    runs: list[tuple[int, int]]
    size: int

    def copy(self, target: int, at: int, digest: Any = None) -> None:
        """Write the stream into the file ``target`` (a descriptor) from offset ``at``, feeding ``digest`` (a
        hashlib object) the same bytes; the disk writes each finished stretch meanwhile (``Writeback``).
        A second thread hashes each block while the next one is read and written (hashing is most of the
        work: 0.4 s of a core for 685 MB)."""
        writeback, out = Writeback(target, at), at
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clip-hashing") as hashing:
            hashed = None
            for piece in self.pieces(buffers=2):  # one being hashed, one being read and written
                left = piece
                while left:
                    written = os.pwrite(target, left, out)
                    left, out = left[written:], out + written
                writeback.written(out)
                if digest is not None:
                    if hashed is not None:
                        hashed.result()  # the block before it is hashed: its buffer is read into next
                    hashed = hashing.submit(digest.update, piece)
            if hashed is not None:
                hashed.result()

    def pieces(self, buffers: int = 0) -> Iterator[bytes | memoryview]:
        """The stream's bytes in order, in pieces of ``READ_CHUNK`` bytes (the last one shorter) read with
        ``os.preadv`` (memory: one piece). With ``buffers`` each piece is a view of one of that many
        buffers, taken in turn: good until as many more pieces have been asked for."""
        blocks = [memoryview(bytearray(READ_CHUNK)) for _ in range(max(buffers, 1))]
        block, filled, turn = blocks[0], 0, 0

        def finished() -> bytes | memoryview:
            nonlocal block, filled, turn
            piece = block[:filled] if buffers else bytes(block[:filled])
            turn = (turn + 1) % len(blocks)
            block, filled = blocks[turn], 0
            return piece

        sets = memoryview(self.index.parameter_sets)
        with open(self.path, "rb") as handle:
            source = handle.fileno()
            lengths = _Lengths(self, source)
            for offset, length in self.runs:
                if offset >= 0:
                    lengths.begin(offset)
                total, done = len(sets) if offset < 0 else length, 0
                while done < total:
                    size = min(READ_CHUNK - filled, total - done)
                    if offset < 0:
                        block[filled:filled + size] = sets[done:done + size]
                    elif os.preadv(source, [block[filled:filled + size]], offset + done) != size:
                        raise _changed(self.path)
                    else:
                        lengths.replace(block, filled, offset + done, size)
                    filled, done = filled + size, done + size
                    if filled == READ_CHUNK:
                        yield finished()
                if offset >= 0:
                    lengths.ended(offset + length)
            lengths.finish()
            if filled:
                yield finished()


class _Lengths:
    """The walk along a plan's NAL units as the file's bytes are read: each 4-byte length is replaced by a
    start code where it was read, and the lengths must end exactly at each sample's end."""

    def __init__(self, plan: SamplePlan, source: int) -> None:
        self.path, self.source = plan.path, source
        self.offsets, self.sizes = plan.index.offsets, plan.index.sizes
        self.sample, self.end, self.sample_end, self.nal = plan.first - 1, plan.end, 0, 0
        self.carry = 0  # bytes of a start code still to write where the next bytes of the run go
        self._next_sample()

    def begin(self, offset: int) -> None:
        """A run of the file's bytes starts at ``offset`` (a NAL unit's length)."""
        self.nal = offset

    def replace(self, block: memoryview, at: int, start: int, size: int) -> None:
        """Write start codes over the lengths among file bytes [start, start + size), read into ``block`` at ``at``."""
        if self.carry:  # a length that began in the block before
            done = min(self.carry, size)
            block[at:at + done] = START_CODE[4 - self.carry:4 - self.carry + done]
            self.carry -= done
        stop, base, nal = start + size, at - start, self.nal
        while nal < stop:
            here = nal + base
            if nal + 4 <= stop:
                length = int.from_bytes(block[here:here + 4], "big")
                block[here:here + 4] = START_CODE
            else:  # the length's last bytes are the next read's first: read it whole (once a block or so)
                whole = os.pread(self.source, 4, nal)
                if len(whole) < 4:
                    raise _changed(self.path)
                length = int.from_bytes(whole, "big")
                block[here:here + stop - nal] = START_CODE[:stop - nal]
                self.carry = 4 - (stop - nal)
            nal += 4 + length
            if nal >= self.sample_end:
                if nal > self.sample_end:
                    raise _damaged(self.path)
                self._next_sample()
        self.nal = nal

    def ended(self, offset: int) -> None:
        """The run ended at ``offset``: so must a NAL unit."""
        if self.nal != offset:
            raise _damaged(self.path)

    def finish(self) -> None:
        """Every sample of the plan was walked to its end."""
        if self.sample < self.end:
            raise _damaged(self.path)

    def _next_sample(self) -> None:
        """Move on to the next sample with bytes (after a gap in the file, the next run starts at it)."""
        self.sample += 1
        while self.sample < self.end and not self.sizes[self.sample]:
            self.sample += 1
        if self.sample < self.end:
            self.sample_end = self.offsets[self.sample] + self.sizes[self.sample]


def plan(path: str | os.PathLike[str], index: Mp4Index, first: int = 0, end: int | None = None) -> SamplePlan | None:
    """The plan of frames [first, end) of ``path`` (an H.264 track ``index`` describes), or None when a
    keyframe's NAL lengths run past its sample (the caller demuxes). Only keyframes' headers are read."""
    path = Path(path)
    end = index.frames if end is None else min(end, index.frames)
    try:
        marks = keyframes(path, index, first, end)
    except Unplannable:
        return None
    runs: list[tuple[int, int]] = []
    for sample in range(first, end):
        at, size = index.offsets[sample], index.sizes[sample]
        inserted = marks.get(sample)
        if inserted is not None:
            _append(runs, at, inserted - at)
            runs.append((-1, 0))
            size, at = at + size - inserted, inserted
        _append(runs, at, size)
    added = sum(1 for inserted in marks.values() if inserted is not None) * len(index.parameter_sets)
    return SamplePlan(path, index, first, end, runs, sum(index.sizes[first:end]) + added)


class Unplannable(Exception):
    """A keyframe whose NAL units run past its sample, or a track this module does not copy."""


def keyframes(path: Path, index: Mp4Index, first: int = 0, end: int | None = None) -> dict[int, int | None]:
    """The sync samples of [first, end) that hold an IDR picture, each with the file offset the parameter
    sets go before (its first slice), or None when it carries its own. Only the NAL headers before each
    one's first slice are read (a few hundred reads for ten minutes); an IDR picture outside the sync
    samples gets none (the stream has them from the keyframe before it)."""
    if index.codec != "h264" or not index.parameter_sets:
        raise Unplannable("not H.264 with avcC parameter sets")
    end = index.frames if end is None else min(end, index.frames)
    marks: dict[int, int | None] = {}
    with open(path, "rb") as handle:
        headers = _Headers(handle.fileno())
        for sample in index.sync:
            if not first <= sample < end:
                continue
            at = index.offsets[sample]
            stop, sets_seen = at + index.sizes[sample], False
            while at < stop:
                length, kind = headers.at(at)
                kind &= 0x1F
                if 1 <= kind <= IDR:  # the first slice: what comes after it is never read
                    if kind == IDR:
                        marks[sample] = None if sets_seen else at
                    break
                sets_seen = sets_seen or kind in (SPS, PPS)
                at += 4 + length
            if at > stop:
                raise Unplannable("a keyframe's NAL lengths run past its sample")
    return marks


class _Headers:
    """NAL unit headers (4-byte length, type byte) at increasing offsets of a file, read a block of
    ``HEADER_BLOCK`` bytes at a time: read one by one, a header every few kilobytes was one system call each,
    36,000 for ten minutes of 1080p, which took 25 s in one benchmark run beside the preview (0.7 ms
    each: waiting for the disk, or for the other threads)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.block, self.start, self.end = fd, bytearray(HEADER_BLOCK), 0, 0

    def at(self, offset: int) -> tuple[int, int]:
        """The length and the header byte of the NAL unit at ``offset``."""
        if not self.start <= offset <= self.end - 5:
            self.start, self.end = offset, offset + os.preadv(self.fd, [self.block], offset)
            if self.end - offset < 5:
                raise Unplannable("sample past the end of the file")
        return struct.unpack_from(">IB", self.block, offset - self.start)


def _append(runs: list[tuple[int, int]], at: int, length: int) -> None:
    """Add the file's bytes [at, at + length) to ``runs``: to the last run when it ends there."""
    if not length:
        return
    if runs and runs[-1][0] >= 0 and sum(runs[-1]) == at:
        runs[-1] = (runs[-1][0], runs[-1][1] + length)
    else:
        runs.append((at, length))


def _changed(path: Path) -> VideoError:
    return VideoError(f"{path.name}: the video file changed while it was stored",
                      "leave clips alone until their objects are queued, then send again")


def _damaged(path: Path) -> VideoError:
    return VideoError(f"{path.name}: the video file is damaged (its NAL unit lengths do not fill its samples)",
                      "store an undamaged copy of the file, or convert it from its source again")
