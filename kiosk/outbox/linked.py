"""Video objects queued without copying their clip: linked into the spool, written out before sending.

A recording's object is nearly all its clip (685 MB for ten minutes of 1080p). Copying it into the spool
when the operator pressed Stop took what the disk needs to write it, 1.6 s and more on a busy one. A
session's clip is the kiosk's own file, which nothing changes any more: it is hard-linked into the spool
instead (``Spool.put_linked``), with the object's header (everything but the Pixel Data, a few kilobytes)
and which frames it holds in the file's record. That is durable and takes milliseconds; the session can
end and delete its copy at once. Before the object is first sent or put on a medium, ``prepare`` writes
the Part 10 file from the two, exactly as it would have been written at once, checks it and records its
SHA-256; the link goes. A crash meanwhile leaves the link and its record: preparing starts again. A
spool on another disk than the clip's gets a copy, as any other object.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, BinaryIO

from kiosk.dataset_check import check_written
from kiosk.errors import KioskError
from kiosk.outbox.spool import Spool, SpoolEntry, Writer
from kiosk.part10 import split_self_copying, write_split


def accept_linked(spool: Spool, dataset: Any, record: dict[str, Any]) -> SpoolEntry | None:
    """Take a video object (file meta set) into ``spool`` with its clip linked, ``record`` as its record;
    None when it cannot be (its Pixel Data is not made from an MP4's samples, or the disk cannot link)."""
    split = split_self_copying(dataset)
    if split is None:
        return None
    head, pixels = split
    stream = pixels.stream
    recipe = {"head": base64.b64encode(head).decode("ascii"), "first": stream.first, "end": stream.end,
              "stream_size": stream.size, "syntax": str(dataset.file_meta.TransferSyntaxUID),
              "uid": str(dataset.SOPInstanceUID)}
    return spool.put_linked(stream.path, {**record, "prepare": recipe}, len(head) + pixels.encoded_length)


def prepare(spool: Spool, name: str) -> SpoolEntry:
    """Write out spool file ``name`` when it waits for that (``Spool.prepare``); its entry either way."""
    return spool.prepare(name, _writer, _check)


def _writer(source: Path, recipe: dict[str, Any]) -> Writer:
    from kiosk.video.elementary import ClipPixelData, ElementaryStream

    def write(out: BinaryIO, digest: Any) -> None:
        stat = os.stat(source)
        if (stat.st_size, stat.st_mtime_ns) != (recipe["source_size"], recipe["source_mtime_ns"]):
            raise _changed(recipe)
        pixels = ClipPixelData(ElementaryStream(source, recipe["first"], recipe["end"], recipe["stream_size"]))
        if not pixels.copies_itself:
            raise _changed(recipe)
        write_split(base64.b64decode(recipe["head"]), pixels, out, digest)

    return write


def _check(path: Path, recipe: dict[str, Any]) -> None:
    check_written(path, recipe["syntax"], recipe["uid"])


def _changed(recipe: dict[str, Any]) -> KioskError:
    return KioskError(f"video object {recipe['uid']}: its clip changed after it was queued",
                      "record or import the clip again")
