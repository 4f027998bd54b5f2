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
from kiosk.dicomize.batch import BatchState, BuildOptions
from kiosk.dicomize.charset import apply_charset
from kiosk.dicomize.image import passthrough_info
from kiosk.dicomize.multiframe import build_multiframe
from kiosk.dicomize.pdf import build_pdf
from kiosk.dicomize.sc import build_sc
from kiosk.errors import KioskError
from kiosk.jpeg import JpegError, parse_jpeg
from kiosk.part10 import set_file_meta
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
            if capture.is_clip and run:  # a clip is an object (or several) of its own
                yield run
                run = []
            if capture.encoded_format in (EncodedFormat.PDF, EncodedFormat.VIDEO) or not multiframe:
                yield [capture]
                continue
            key = _layout(capture)
            if run and (key is None or key != _layout(run[0])):
                yield run
                run = []
            run.append(capture)
        if run:
            yield run

    def build_one(self, captures: Sequence[Capture]) -> Dataset:
        """The one object for a group of captures from ``plan``: Encapsulated PDF, SC or multi-frame SC."""
        first = captures[0]
        if first.encoded_format is EncodedFormat.PDF:
            self._documents += 1
            ds = build_pdf(self, first, self._documents)
        else:
            self._images += 1
            ds = build_multiframe(self, list(captures), self._images) if len(captures) > 1 \
                else build_sc(self, first, self._images)
        apply_charset(ds, self.study.charset)
        if self.options.transfer_syntax == tsx.IMPLICIT_LE.name and not ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.file_meta.TransferSyntaxUID = UID(tsx.IMPLICIT_LE.uid)
        return ds

    def build(self, captures: Iterable[Capture]) -> list[Dataset]:
        """Datasets for ``captures``, one per group of ``plan`` (all in memory: for a few captures;
        ``kiosk.station`` builds one object at a time)."""
        return [self.build_one(group) for group in self.plan(captures)]


def build_datasets(captures: Iterable[Capture], study: StudyContext, options: BuildOptions | None = None) -> list[Dataset]:
    """DICOM datasets for ``captures`` of ``study`` (one batch: one series per object family)."""
    return Batch(study, options).build(captures)


class WriteError(KioskError):
    """A DICOM file could not be written."""


def write_dataset(ds: Dataset, path: str | os.PathLike[str], durable: bool = True) -> Path:
    """Write ``ds`` as a Part 10 file with our file meta, atomically (no partial file, ever).

    ``durable`` also fsyncs the data before the rename, so the file survives a
    power cut; batch converters that can simply be re-run may skip it.
    """
    path = Path(path)
    set_file_meta(ds)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            ds.save_as(out, enforce_file_format=True)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"{path}: cannot write ({exc.strerror})", "check free space and permissions") from None
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
