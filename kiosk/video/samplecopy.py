"""The Annex B stream of frames of an MP4/MOV file's H.264 track, made without passing it through Python.

An MP4 sample is its NAL units, each after a 4-byte big-endian length; the Annex B form is the same bytes
with each length replaced by a 4-byte start code (00 00 00 01), and the parameter sets (from avcC) put
before each IDR picture that does not carry its own, as FFmpeg's ``h264_mp4toannexb`` does (FFmpeg
gives NAL units after the first of a packet 3-byte start codes; the 4-byte form is as valid and keeps
each sample's length). A ``SamplePlan`` lists the stream as runs of the file's bytes and inserted
parameter sets, with the output positions of the start codes: ``copy`` has the kernel copy the runs
(``os.copy_file_range``, else ``os.sendfile``) and writes the start codes over the lengths in place;
``pieces`` gives the same bytes to Python (the outbox's spool hashes them as it writes them).
"""

from __future__ import annotations

import os
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from kiosk.video.facts import VideoError
from kiosk.video.mp4index import Mp4Index

START_CODE = b"\x00\x00\x00\x01"
IDR, SPS, PPS = 5, 7, 8
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class SamplePlan:
    """Frames [first, end) of ``path`` as Annex B: ``runs`` (file offset, length) or (-1, 0) for the
    parameter sets, in output order; ``starts``: output offsets of the start codes to write."""

    path: Path
    parameter_sets: bytes
    runs: list[tuple[int, int]]
    starts: array
    size: int

    def copy(self, source: int, target: int, at: int) -> None:
        """Write the stream into the file ``target`` (a descriptor) from offset ``at``, ``source`` being
        ``path`` opened for reading."""
        out = at
        for offset, length in self.runs:
            if offset < 0:
                os.pwrite(target, self.parameter_sets, out)
                out += len(self.parameter_sets)
                continue
            _kernel_copy(self.path, source, target, offset, out, length)
            out += length
        for position in self.starts:
            os.pwrite(target, START_CODE, at + position)

    def pieces(self) -> Iterator[bytes]:
        """The stream's bytes in order, read with ``os.pread`` (memory: one chunk)."""
        starts, next_start, out = self.starts, 0, 0
        with open(self.path, "rb") as handle:
            source = handle.fileno()
            for offset, length in self.runs:
                if offset < 0:
                    yield self.parameter_sets
                    out += len(self.parameter_sets)
                    continue
                done = 0
                while done < length:
                    chunk = bytearray(os.pread(source, min(READ_CHUNK, length - done), offset + done))
                    if not chunk:
                        raise _changed(self.path)
                    end = out + len(chunk)
                    while next_start < len(starts) and starts[next_start] < end:
                        at = starts[next_start] - out
                        chunk[at:at + 4] = START_CODE
                        next_start += 1
                    yield bytes(chunk)
                    done += len(chunk)
                    out = end


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
        source = handle.fileno()
        for sample in range(first, end):
            at = index.offsets[sample]
            stop = at + index.sizes[sample]
            nals: list[tuple[int, int]] = []
            sets_seen, idr, inserted = False, False, None
            while at < stop:
                head = os.pread(source, 5, at)
                if len(head) < 5:
                    raise Unplannable("sample past the end of the file")
                length, kind = struct.unpack(">IB", head)
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


def _kernel_copy(path: Path, source: int, target: int, offset: int, out: int, length: int) -> None:
    """``length`` bytes from ``offset`` of ``source`` to ``out`` of ``target``, copied by the kernel."""
    while length:
        try:
            done = os.copy_file_range(source, target, length, offset, out)
        except OSError:  # another file system, or a kernel without it: sendfile writes at the position
            os.lseek(target, out, os.SEEK_SET)
            done = os.sendfile(target, source, offset, length)
        if not done:
            raise _changed(path)
        offset, out, length = offset + done, out + done, length - done


def _changed(path: Path) -> VideoError:
    return VideoError(f"{path.name}: the video file changed while it was stored",
                      "leave clips alone until their objects are queued, then send again")
