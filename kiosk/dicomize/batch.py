"""A batch's state, below the IOD builders: options, the study's UIDs, dates and instance numbering.

Every builder (``sc``, ``multiframe``, ``pdf``) and the shared ``modules``
read a ``BatchState``; ``builder.Batch`` adds the dispatch to them, so no
builder imports the module that calls it.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kiosk.capture import Capture, SourceKind
from kiosk.dicomize import codecs
from kiosk.dicomize.uids import new_uid
from kiosk.errors import UsageError
from kiosk.modalities import series_description
from kiosk.study import CONVERSION_TYPES, StudyContext, check_person_name


MB = 1 << 20
#: ``[video] iod``: "auto" picks by the modality (``kiosk.dicomize.video.family``).
VIDEO_IODS = ("auto", "endoscopic", "photographic", "secondary-capture")
#: The modality the VL and video IODs require (PS3.3 A.32): a chosen IOD sets the image series'.
IOD_MODALITY = {"endoscopic": "ES", "photographic": "XC"}


def dicom_date(value: dt.datetime | dt.date) -> str:
    return value.strftime("%Y%m%d")


def dicom_time(value: dt.datetime) -> str:
    return value.strftime("%H%M%S")


@dataclass(frozen=True)
class PerformedStep:
    """The performed procedure step a batch belongs to: what its objects and the MPPS for it say.

    ``uid`` is the MPPS SOP Instance UID; ``study_uid`` the study's when the order gives none."""

    id: str
    uid: str
    start: dt.datetime
    study_uid: str

    @classmethod
    def new(cls, study: StudyContext, uid_root: str = "", now: dt.datetime | None = None) -> "PerformedStep":
        """A step starting ``now``: its ID is unique per station and second (yyMMddHHmmss + 4 random digits)."""
        now = now or dt.datetime.now()
        return cls(now.strftime("%y%m%d%H%M%S") + f"{secrets.randbelow(10_000):04d}", new_uid(uid_root), now,
                   study.study_uid or new_uid(uid_root))


def default_study_id(study: StudyContext, step: PerformedStep) -> str:
    """The Study ID when the order gives none, which DICOMDIRs and some viewers list: the requested
    procedure ID, else the accession number, else the step's start (yyMMddHHmmss)."""
    return study.requested_procedure_id[:16] or study.accession[:16] or step.start.strftime("%y%m%d%H%M%S")


@dataclass(frozen=True)
class BuildOptions:
    """Settings of a batch. ``transfer_syntax`` is one of ``transfer_syntaxes.CHOICES``.

    ``modality``/``conversion_type`` override the defaults (the order's
    modality, else OT, for images, DOC for PDFs; the Conversion Type from each
    capture's source kind). ``operators_name`` (PN) and ``body_part`` (Body
    Part Examined, a PS3.16 CID 4031 term) are written when given. Without a
    ``series_description`` each series is described by the kind of its first
    capture (``series_descriptions``, else ``kiosk.modalities``' defaults).
    """

    transfer_syntax: str = "auto"
    multiframe: bool = False
    monochrome1: bool = False
    modality: str = ""
    conversion_type: str = ""
    series_description: str = ""
    station_name: str = "KIOSK"
    institution_name: str = ""
    institution_address: str = ""
    department: str = ""
    operators_name: str = ""
    body_part: str = ""
    series_descriptions: Mapping[str, str] = field(default_factory=dict)
    step: PerformedStep | None = None
    first_series_number: int = 1  # the images' series; PDFs take the next (kiosk.existing_study)
    uid_root: str = ""
    j2k_ratio: float = 10.0
    jpeg_quality: int = 90
    video_iod: str = "auto"  # [video] iod: the objects for clips and video stills (kiosk.dicomize.video)
    max_object_bytes: int = 2000 * MB  # [video] max_object_mb: a longer clip is split into several objects

    @classmethod
    def from_config(cls, config: Any, **changes: Any) -> "BuildOptions":
        """Options with station, institution and UID root from a ``Config``."""
        local = config.local if config is not None else None
        base = cls() if local is None else cls(
            station_name=local.station_name, institution_name=local.institution_name,
            institution_address=local.institution_address, department=local.department, uid_root=local.uid_root,
            series_descriptions=config.acquisition.series_descriptions, video_iod=config.video.iod,
            max_object_bytes=config.video.max_object_mb * MB)
        return replace(base, **{k: v for k, v in changes.items() if v is not None})

    def check(self) -> None:
        codecs.check_ts_name(self.transfer_syntax)
        if self.conversion_type and self.conversion_type not in CONVERSION_TYPES:
            raise UsageError(f"unknown conversion type {self.conversion_type!r}",
                             f"use one of {', '.join(CONVERSION_TYPES)}")
        if self.body_part and not re.fullmatch(r"[A-Z0-9_ ]{1,16}", self.body_part):
            raise UsageError(f"body part {self.body_part!r} is not a DICOM code string",
                             "use a term such as CHEST or ABDOMEN (capitals, at most 16 characters)")
        problems = check_person_name("operator", self.operators_name)
        if problems:
            raise UsageError(problems[0], "give the operator as Family^Given")
        if not 1 < self.j2k_ratio <= 1000:
            raise UsageError(f"JPEG 2000 compression ratio {self.j2k_ratio} is out of range (1 to 1000)")
        if self.video_iod not in VIDEO_IODS:
            raise UsageError(f"unknown video object kind {self.video_iod!r}", f"use one of {', '.join(VIDEO_IODS)}")
        if self.max_object_bytes <= 0:
            raise UsageError(f"the largest video object cannot be {self.max_object_bytes} bytes",
                             "set [video] max_object_mb to 1 or more")


class BatchState:
    """One acquisition batch of one study: shared UIDs, dates and numbering (what every IOD builder reads)."""

    def __init__(self, study: StudyContext, options: BuildOptions | None = None, now: dt.datetime | None = None):
        study.validate()
        self.study = study
        self.options = options or BuildOptions()
        self.options.check()
        self.now = now or dt.datetime.now()
        step = self.options.step or PerformedStep.new(study, self.options.uid_root, self.now)
        self.study_uid = study.study_uid or step.study_uid
        self.study_date = study.study_date or dicom_date(self.now)
        self.study_time = study.study_time or (dicom_time(self.now) if not study.study_date else "")
        self.series_date, self.series_time = dicom_date(self.now), dicom_time(self.now)
        self.image_series_uid, self.document_series_uid = self.new_uid(), self.new_uid()
        first = self.options.first_series_number
        self.image_series_number, self.document_series_number = first, first + 1
        self.image_modality = IOD_MODALITY.get(self.options.video_iod) or self.options.modality or study.modality or "OT"
        self.document_modality = self.options.modality or "DOC"
        self._images = self._documents = 0
        self._descriptions: dict[str, str] = {}
        self.step = step

    def new_uid(self) -> str:
        return new_uid(self.options.uid_root)

    def next_image_number(self) -> int:
        """The Instance Number of the next object in the image series."""
        self._images += 1
        return self._images

    def new_document(self) -> None:
        """A separator sheet: the next objects are another document, in new series (numbered after
        this batch's) with instances from 1. Nothing built since the last one: nothing changes."""
        if not (self._images or self._documents):
            return
        top = max(self.image_series_number, self.document_series_number)
        self.image_series_uid, self.document_series_uid = self.new_uid(), self.new_uid()
        self.image_series_number, self.document_series_number = top + 1, top + 2
        self._images = self._documents = 0

    def series_description(self, series_uid: str, kind: SourceKind) -> str:
        """The description of a series: the option, else the default for the kind of its first capture."""
        if self.options.series_description:
            return self.options.series_description
        return self._descriptions.setdefault(series_uid, series_description(kind, self.options.series_descriptions))

    def burned_in(self, capture: Capture) -> bool:
        """Scanned documents carry names and dates in the pixels; other sources may say so in metadata."""
        flag = capture.metadata.get("burned_in_annotation")
        return bool(flag) if flag is not None else capture.kind is SourceKind.SCANNED_DOCUMENT
