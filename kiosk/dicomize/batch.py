"""A batch's state, below the IOD builders: options, the study's UIDs, dates and instance numbering.

Every builder (``sc``, ``multiframe``, ``pdf``) and the shared ``modules``
read a ``BatchState``; ``builder.Batch`` adds the dispatch to them, so no
builder imports the module that calls it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

from kiosk.capture import Capture, SourceKind
from kiosk.dicomize import codecs
from kiosk.dicomize.uids import new_uid
from kiosk.errors import UsageError
from kiosk.study import CONVERSION_TYPES, StudyContext


def dicom_date(value: dt.datetime | dt.date) -> str:
    return value.strftime("%Y%m%d")


def dicom_time(value: dt.datetime) -> str:
    return value.strftime("%H%M%S")


@dataclass(frozen=True)
class BuildOptions:
    """Settings of a batch. ``transfer_syntax`` is one of ``transfer_syntaxes.CHOICES``.

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


class BatchState:
    """One acquisition batch of one study: shared UIDs, dates and numbering (what every IOD builder reads)."""

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
