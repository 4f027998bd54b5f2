"""The dicomizer's public API: captures + study context + options -> datasets.

A ``Batch`` is one acquisition batch of one study: it owns the Study Instance
UID, one series for images and one for documents (their modalities differ),
and numbers instances in the order they are built. ``build_datasets`` is the
one-call form. ``write_dataset`` writes a Part 10 file atomically.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from kiosk.capture import Capture, EncodedFormat, SourceKind
from kiosk.dicomize import codecs
from kiosk.dicomize.charset import apply_charset
from kiosk.dicomize.modules import dicom_date, dicom_time
from kiosk.dicomize.uids import new_uid
from kiosk.errors import KioskError, UsageError
from kiosk.part10 import set_file_meta
from kiosk.study import CONVERSION_TYPES, StudyContext


@dataclass(frozen=True)
class BuildOptions:
    """Settings of a batch. ``transfer_syntax`` is one of ``codecs.TS_CHOICES``.

    ``modality``/``conversion_type`` override the defaults (OT for images, DOC
    for PDFs; the Conversion Type from each capture's source kind).
    """

    transfer_syntax: str = "auto"
    multiframe: bool = False
    monochrome1: bool = False
    modality: str = ""
    conversion_type: str = ""
    series_description: str = ""
    station_name: str = "KIOSK"
    institution_name: str = ""
    uid_root: str = ""
    j2k_ratio: float = 10.0
    jpeg_quality: int = 90

    @classmethod
    def from_config(cls, config: Any, **changes: Any) -> "BuildOptions":
        """Options with station, institution and UID root from a ``Config``."""
        local = config.local if config is not None else None
        base = cls() if local is None else cls(station_name=local.station_name,
                                                 institution_name=local.institution_name, uid_root=local.uid_root)
        return replace(base, **{k: v for k, v in changes.items() if v is not None})

    def check(self) -> None:
        codecs.check_ts_name(self.transfer_syntax)
        if self.conversion_type and self.conversion_type not in CONVERSION_TYPES:
            raise UsageError(f"unknown conversion type {self.conversion_type!r}",
                             f"use one of {', '.join(CONVERSION_TYPES)}")
        if not 1 < self.j2k_ratio <= 1000:
            raise UsageError(f"JPEG 2000 compression ratio {self.j2k_ratio} is out of range (1 to 1000)")


class Batch:
    """One acquisition batch of one study: shared UIDs, dates and numbering."""

    def __init__(self, study: StudyContext, options: BuildOptions | None = None, now: dt.datetime | None = None):
        study.validate()
        self.study = study
        self.options = options or BuildOptions()
        self.options.check()
        self.now = now or dt.datetime.now()
        self.study_uid = study.study_uid or self.new_uid()
        self.study_date = study.study_date or dicom_date(self.now)
        self.study_time = study.study_time or (dicom_time(self.now) if not study.study_date else "")
        self.series_date, self.series_time = dicom_date(self.now), dicom_time(self.now)
        self.image_series_uid, self.document_series_uid = self.new_uid(), self.new_uid()
        self.image_series_number, self.document_series_number = 1, 2
        self.image_modality = self.options.modality or study.modality or "OT"
        self.document_modality = self.options.modality or "DOC"
        self._images = self._documents = 0

    def new_uid(self) -> str:
        return new_uid(self.options.uid_root)

    def burned_in(self, capture: Capture) -> bool:
        """Scanned documents carry names and dates in the pixels; other sources may say so in metadata."""
        flag = capture.metadata.get("burned_in_annotation")
        return bool(flag) if flag is not None else capture.kind is SourceKind.SCANNED_DOCUMENT

    def plan(self, captures: Iterable[Capture], multiframe: bool | None = None) -> Iterator[list[Capture]]:
        """The captures of each object, as soon as each is complete: a PDF alone; images one each, or
        (``multiframe``, default ``options.multiframe``) one object per run of same-layout images."""
        if multiframe is None:
            multiframe = self.options.multiframe
        run: list[Capture] = []
        for capture in captures:
            if capture.encoded_format is EncodedFormat.PDF or not multiframe:
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
        from kiosk.dicomize.multiframe import build_multiframe
        from kiosk.dicomize.pdf import build_pdf
        from kiosk.dicomize.sc import build_sc

        first = captures[0]
        if first.encoded_format is EncodedFormat.PDF:
            self._documents += 1
            ds = build_pdf(self, first, self._documents)
        else:
            self._images += 1
            ds = build_multiframe(self, list(captures), self._images) if len(captures) > 1 \
                else build_sc(self, first, self._images)
        apply_charset(ds, self.study.charset)
        if self.options.transfer_syntax == "implicit" and not ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
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
    from kiosk.dicomize.image import passthrough_info
    from kiosk.jpeg import JpegError, parse_jpeg

    info = passthrough_info(capture)
    if info:
        return ("jpeg", info.width, info.height, info.components, info.color_space, info.sampling)
    try:
        info = parse_jpeg(capture.encoded or b"")
    except JpegError:
        return None
    size = (info.width, info.height) if info.exif_orientation >= 5 else (info.height, info.width)
    return ("decoded-jpeg", size, info.components == 1, info.precision)
