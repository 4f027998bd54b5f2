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
from typing import Iterable

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

    def build(self, captures: Iterable[Capture]) -> list[Dataset]:
        """Datasets for ``captures`` in order: PDFs encapsulated, images as SC
        (one per capture, or multi-frame per run of same-sized captures)."""
        out: list[Dataset] = []
        images: list[Capture] = []
        for capture in captures:
            if capture.encoded_format is EncodedFormat.PDF:
                self._documents += 1
                out.append(build_pdf(self, capture, self._documents))
            else:
                images.append(capture)
        if self.options.multiframe:
            for group in _runs_of_same_layout(images):
                self._images += 1
                out.append(build_multiframe(self, group, self._images) if len(group) > 1
                           else build_sc(self, group[0], self._images))
        else:
            for capture in images:
                self._images += 1
                out.append(build_sc(self, capture, self._images))
        for ds in out:
            apply_charset(ds, self.study.charset)
            if self.options.transfer_syntax == tsx.IMPLICIT_LE.name and not ds.file_meta.TransferSyntaxUID.is_compressed:
                ds.file_meta.TransferSyntaxUID = UID(tsx.IMPLICIT_LE.uid)
        return out


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


def _runs_of_same_layout(captures: list[Capture]) -> list[list[Capture]]:
    """Consecutive captures that can share one multi-frame object."""
    runs: list[list[Capture]] = []
    for capture in captures:
        key = _layout(capture)
        if runs and _layout(runs[-1][0]) == key and key is not None:
            runs[-1].append(capture)
        else:
            runs.append([capture])
    return runs


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
