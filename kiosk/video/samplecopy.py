"""The Annex B stream of frames of an MP4/MOV file's H.264 track, made from the samples without demuxing.

An MP4 sample is its NAL units, each after a 4-byte big-endian length; the Annex B form is the same bytes
with each length replaced by a 4-byte start code (00 00 00 01), and the parameter sets (from avcC) put
before each IDR picture that does not carry its own, as FFmpeg's ``h264_mp4toannexb`` does (FFmpeg
gives NAL units after the first of a packet 3-byte start codes; the 4-byte form is as valid and keeps
each sample's length). A ``SamplePlan`` lists the stream as runs of the file's bytes and inserted
parameter sets, with the output positions of the start codes. ``pieces`` reads the runs into a buffer
a block at a time and writes the start codes over the lengths there; ``copy`` writes each block into a
file with one call, a second thread hashing it meanwhile for the outbox's spool. Few large calls matter
more than saving the pass through memory: each system call lets the other threads take the interpreter,
and the 55,000 calls of a copy by the kernel with each header read and each start code written on its
own each waited for them (a 590 MB clip queued in 20-27 s beside a thread computing in Python, against
6 s now; 0.8 s alone, either way).
"""

from __future__ import annotations

import os
import struct
from array import array
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


@dataclass(frozen=True)
class SamplePlan:
    """Frames [first, end) of ``path`` as Annex B: ``runs`` (file offset, length) or (-1, 0) for the
    parameter sets, in output order; ``starts``: output offsets of the start codes to write."""

    path: Path
    parameter_sets: bytes
    runs: list[tuple[int, int]]
    starts: array
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
        starts, next_start, begin = self.starts, 0, 0  # begin: the stream offset of the block's first byte
        blocks = [memoryview(bytearray(READ_CHUNK)) for _ in range(max(buffers, 1))]
        block, filled, turn = blocks[0], 0, 0

        def finished() -> bytes | memoryview:
            nonlocal next_start, begin, filled, block, turn
            end = begin + filled
            while next_start < len(starts) and starts[next_start] < end:
                start = starts[next_start]
                low, high = max(start, begin), min(start + 4, end)
                block[low - begin:high - begin] = START_CODE[low - start:high - start]
                if start + 4 > end:
                    break  # the start code's last bytes begin the next block
                next_start += 1
            piece = block[:filled] if buffers else bytes(block[:filled])
            turn = (turn + 1) % len(blocks)
            block, begin, filled = blocks[turn], end, 0
            return piece

        with open(self.path, "rb") as handle:
            source = handle.fileno()
            for offset, length in self.runs:
                sets = memoryview(self.parameter_sets) if offset < 0 else None
                total, done = len(sets) if sets is not None else length, 0
                while done < total:
                    size = min(READ_CHUNK - filled, total - done)
                    if sets is not None:
                        block[filled:filled + size] = sets[done:done + size]
                    elif os.preadv(source, [block[filled:filled + size]], offset + done) != size:
                        raise _changed(self.path)
                    filled, done = filled + size, done + size
                    if filled == READ_CHUNK:
                        yield finished()
            if filled:
                yield finished()


def plan(path: str | os.PathLike[str], index: Mp4Index, first: int = 0, end: int | None = None) -> SamplePlan | None:
    """The plan of frames [first, end) of ``path`` (an H.264 track ``index`` describes), or None when a
    sample's NAL lengths do not add up to the sample (the caller demuxes)."""
    path = Path(path)
    runs: list[tuple[int, int]] = []
    starts = array("Q")
    out = 0
    try:
        for _, _, nals, inserted in samples(path, index, first, end):
            for at, length in nals:
                if at == inserted:
                    out = _add(runs, at, out)
                    runs.append((-1, 0))
                    out += len(index.parameter_sets)
                out = _add(runs, at, out)
                starts.append(out)
                out = _extend(runs, at + 4 + length, out)
    except Unplannable:
        return None
    return SamplePlan(path, index.parameter_sets, runs, starts, out)


class Unplannable(Exception):
    """A sample whose NAL units do not fill it exactly, or a track this module does not copy."""


def samples(path: Path, index: Mp4Index, first: int = 0,
            end: int | None = None) -> Iterator[tuple[int, bool, list[tuple[int, int]], int | None]]:
    """For each sample of [first, end): its number, whether it holds an IDR picture, its NAL units (file
    offset of the length, length) and the offset the parameter sets go before (None: it carries its own,
    or is no IDR). Only the lengths and NAL headers are read."""
    if index.codec != "h264" or not index.parameter_sets:
        raise Unplannable("not H.264 with avcC parameter sets")
    end = index.frames if end is None else min(end, index.frames)
    with open(path, "rb") as handle:
        headers = _Headers(handle.fileno())
        for sample in range(first, end):
            at = index.offsets[sample]
            stop = at + index.sizes[sample]
            nals: list[tuple[int, int]] = []
            sets_seen, idr, inserted = False, False, None
            while at < stop:
                length, kind = headers.at(at)
                kind &= 0x1F
                if kind in (SPS, PPS):
                    sets_seen = True
                elif kind == IDR and not idr:
                    idr = True
                    inserted = None if sets_seen else at  # before the picture's first slice
                nals.append((at, length))
                at += 4 + length
            if at != stop:
                raise Unplannable("NAL lengths do not add up to the sample")
            yield sample, idr, nals, inserted


class _Headers:
    """NAL unit headers (4-byte length, type byte) at increasing offsets of a file, read a block of
    ``READ_CHUNK`` bytes at a time, in order (the kernel reads ahead): read one by one, a header every
    few kilobytes was one system call each, 36,000 for ten minutes of 1080p, which took 25 s in one
    benchmark run beside the preview (0.7 ms each: waiting for the disk, or for the other threads)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.block, self.start, self.end = fd, bytearray(READ_CHUNK), 0, 0

    def at(self, offset: int) -> tuple[int, int]:
        """The length and the header byte of the NAL unit at ``offset``."""
        if not self.start <= offset <= self.end - 5:
            self.start, self.end = offset, offset + os.preadv(self.fd, [self.block], offset)
            if self.end - offset < 5:
                raise Unplannable("sample past the end of the file")
        return struct.unpack_from(">IB", self.block, offset - self.start)


def _add(runs: list[tuple[int, int]], at: int, out: int) -> int:
    """Make sure the last run ends at file offset ``at`` (a new run starts there otherwise)."""
    if not runs or runs[-1][0] < 0 or runs[-1][0] + runs[-1][1] != at:
        runs.append((at, 0))
    return out


def _extend(runs: list[tuple[int, int]], at: int, out: int) -> int:
    """Grow the last run to file offset ``at``; the output offset after it."""
    offset, length = runs[-1]
    runs[-1] = (offset, at - offset)
    return out + (at - offset) - length


def _changed(path: Path) -> VideoError:
    return VideoError(f"{path.name}: the video file changed while it was stored",
                      "leave clips alone until their objects are queued, then send again")
