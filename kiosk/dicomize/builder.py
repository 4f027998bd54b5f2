"""The dicomizer's public API: captures + study context + options -> datasets.

A ``Batch`` is one acquisition batch of one study: it owns the Study Instance
UID, one series for images and one for documents (their modalities differ),
and numbers instances in the order they are built (its state is
``batch.BatchState``; here it picks the IOD builder for each capture).
``build_datasets`` is the one-call form. ``write_dataset`` writes a Part 10
file atomically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from pydicom.dataset import Dataset
from pydicom.uid import UID

from kiosk import transfer_syntaxes as tsx
from kiosk.capture import Capture, EncodedFormat
from kiosk.dataset_check import check_complete
from kiosk.dicomize.batch import BatchState, BuildOptions
from kiosk.dicomize.charset import apply_charset
from kiosk.dicomize.image import passthrough_info
from kiosk.dicomize.multiframe import build_multiframe
from kiosk.dicomize.pdf import build_pdf
from kiosk.dicomize.sc import build_sc
from kiosk.dicomize.video import build_clip, build_still, is_vl_still
from kiosk.errors import KioskError
from kiosk.jpeg import JpegError, parse_jpeg
from kiosk.part10 import NotPart10Error, save, set_file_meta, streamed_size
from kiosk.study import StudyContext


class Batch(BatchState):
    """A ``BatchState`` that builds: captures in, datasets out, numbered in order."""

    def plan(self, captures: Iterable[Capture], multiframe: bool | None = None) -> Iterator[list[Capture]]:
        """The captures of each object, as soon as each is complete: a PDF alone; images one each, or
        (``multiframe``, default ``options.multiframe``) one object per run of same-layout images."""
        if multiframe is None:
            multiframe = self.options.multiframe
        run: list[Capture] = []
        for capture in captures:
            if capture.is_clip and run:  # a clip is never joined to others, and keeps its place
                yield run
                run = []
            if capture.encoded_format is EncodedFormat.PDF or capture.is_clip or not multiframe:
                yield [capture]
                continue
            key = _layout(capture)
            if run and (key is None or key != _layout(run[0])):
                yield run
                run = []
            run.append(capture)
        if run:
            yield run

    def objects(self, captures: Sequence[Capture]) -> Iterator[Dataset]:
        """The objects for a group of captures from ``plan``, one at a time: one for images and PDFs,
        one or more for a clip (``kiosk.dicomize.video``: they read the clip's file when written)."""
        if captures[0].is_clip:
            for ds in build_clip(self, captures[0]):
                yield self._finish(ds)
        else:
            yield self.build_one(captures)

    def build_one(self, captures: Sequence[Capture]) -> Dataset:
        """The one object for a group of captures from ``plan`` that is not a clip: Encapsulated PDF,
        SC, VL Endoscopic/Photographic/Microscopic (video stills) or multi-frame SC."""
        first = captures[0]
        if first.is_clip:
            raise ValueError("a clip may make several objects: use Batch.objects")
        if first.encoded_format is EncodedFormat.PDF:
            self._documents += 1
            ds = build_pdf(self, first, self._documents)
        elif len(captures) > 1:
            ds = build_multiframe(self, list(captures), self.next_image_number())
        elif is_vl_still(self, first):
            ds = build_still(self, first, self.next_image_number())
        else:
            ds = build_sc(self, first, self.next_image_number())
        return self._finish(ds)

    def _finish(self, ds: Dataset) -> Dataset:
        apply_charset(ds, self.study.charset)
        if self.options.transfer_syntax == tsx.IMPLICIT_LE.name and not ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.file_meta.TransferSyntaxUID = UID(tsx.IMPLICIT_LE.uid)
        return ds

    def build(self, captures: Iterable[Capture]) -> list[Dataset]:
        """Datasets for ``captures``, every object of every group of ``plan`` (all at once: for a few
        captures; ``kiosk.station`` builds one object at a time)."""
        return [ds for group in self.plan(captures) for ds in self.objects(group)]


def build_datasets(captures: Iterable[Capture], study: StudyContext, options: BuildOptions | None = None) -> list[Dataset]:
    """DICOM datasets for ``captures`` of ``study`` (one batch: one series per object family)."""
    return Batch(study, options).build(captures)


class WriteError(KioskError):
    """A DICOM file could not be written."""


def write_dataset(ds: Dataset, path: str | os.PathLike[str], durable: bool = True) -> Path:
    """Write ``ds`` as a Part 10 file with our file meta, atomically (no partial file, ever).

    ``durable`` also fsyncs the data before the rename, so the file survives a
    power cut; batch converters that can simply be re-run may skip it. Pixel data
    that is a file (a video object) is copied through, never held in memory, and
    the file is checked whole before it gets its name; a clip's stream made from an MP4's samples is
    written without pydicom (``kiosk.part10.save``).
    """
    path = Path(path)
    set_file_meta(ds)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            save(ds, out)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        if streamed_size(ds) is not None:
            # pydicom took the stream's length before copying it: a stream that changed meanwhile shows here.
            check_complete(Path(tmp), str(ds.file_meta.TransferSyntaxUID))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"{path}: cannot write ({exc.strerror})", "check free space and permissions") from None
    except NotPart10Error as exc:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"{path}: {exc.message}", "build the object again from its capture") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _layout(capture: Capture) -> tuple | None:
    """What must match for captures to share an object: the JPEG layout for
    passthrough, else the decoded pixel shape and type."""
    if capture.pixels is not None:
        return ("pixels", capture.pixels.shape, capture.pixels.dtype.str, capture.effective_bits)
    info = passthrough_info(capture)
    if info:
        return ("jpeg", info.width, info.height, info.components, info.color_space, info.sampling)
    try:
        info = parse_jpeg(capture.encoded or b"")
    except JpegError:
        return None
    size = (info.width, info.height) if info.exif_orientation >= 5 else (info.height, info.width)
    return ("decoded-jpeg", size, info.components == 1, info.precision)
