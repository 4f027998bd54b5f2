"""StudyContext: the patient and order data every object of a study carries.

A context comes from a worklist item (``from_worklist``), a study found on the
PACS (``from_pacs_study``) or the keyboard (``manual``). ``validate()`` checks
every field against its DICOM value representation and raises one
``StudyError`` listing each invalid field on its own line. ``with_edits()``
changes demographics and remembers the values they replace, so the dicomizer
can record them in the Original Attributes Sequence.

Only ``from_worklist``/``from_pacs_study`` touch pydicom datasets, and only
through attribute access: this module imports nothing heavy.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from kiosk.errors import KioskError

MANUAL, WORKLIST, PACS = "manual", "worklist", "pacs"

# Conversion Type (0008,0064) defined terms, PS3.3 C.8.6.1.
CONVERSION_TYPES = ("DV", "DI", "DF", "WSD", "SD", "SI", "DRW", "SYN")

# Demographics whose edits are recorded in the Original Attributes Sequence,
# with the DICOM keyword each one is written as.
DEMOGRAPHICS = {
    "patient_name": "PatientName",
    "patient_id": "PatientID",
    "issuer": "IssuerOfPatientID",
    "birth_date": "PatientBirthDate",
    "sex": "PatientSex",
    "accession": "AccessionNumber",
}


class StudyError(KioskError):
    """Invalid patient or order data: one line per field."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        head = f"{source}: " if source else ""
        super().__init__("\n".join(head + p for p in problems),
                         "correct the values named above and try again")


@dataclass(frozen=True)
class ReferencedStudy:
    """One item of the Referenced Study Sequence (usually the order's study)."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class StudyContext:
    """Patient and order data shared by all objects of a study.

    ``patient_name`` and ``referring_physician`` are DICOM PN strings
    (``Family^Given^Middle^Prefix^Suffix``, component groups separated by
    ``=``). Dates are ``YYYYMMDD``. ``charset`` is the Specific Character Set
    the data came in (a worklist's own), preferred when writing if it can hold
    every value. ``original`` maps DICOM keywords to the values that edits
    replaced. ``misread`` maps fields to their UTF-8 reading when the source
    declared Latin-1 but sent UTF-8 bytes: until the operator chooses
    (``as_utf8`` or ``as_declared``) the context must not be used.
    """

    patient_name: str = ""
    patient_id: str = ""
    issuer: str = ""
    birth_date: str = ""
    sex: str = ""
    accession: str = ""
    referring_physician: str = ""
    study_description: str = ""
    study_uid: str = ""
    study_id: str = ""
    study_date: str = ""
    study_time: str = ""
    requested_procedure_id: str = ""
    requested_procedure_description: str = ""
    scheduled_step_id: str = ""
    scheduled_step_description: str = ""
    referenced_studies: tuple[ReferencedStudy, ...] = ()
    modality: str = ""
    charset: str | tuple[str, ...] = ""
    origin: str = MANUAL
    source_ae: str = ""
    original: dict[str, str] = field(default_factory=dict)
    misread: dict[str, str] = field(default_factory=dict)

    # -- construction -----------------------------------------------------

    @classmethod
    def manual(cls, **values: Any) -> "StudyContext":
        """A context typed by the user; values are normalised and validated."""
        context = cls(**{k: v for k, v in values.items() if v is not None}).normalized()
        context.validate()
        return context

    @classmethod
    def from_worklist(cls, ds: Any, source_ae: str = "") -> "StudyContext":
        """A context from a Modality Worklist item (IHE RAD TF-2 Appendix A mapping)."""
        step = _first(ds, "ScheduledProcedureStepSequence")
        refs = tuple(
            ReferencedStudy(str(item.get("ReferencedSOPClassUID", "")), str(item.get("ReferencedSOPInstanceUID", "")))
            for item in ds.get("ReferencedStudySequence", None) or ()
            if item.get("ReferencedSOPInstanceUID")
        )
        procedure = _text(ds, "RequestedProcedureDescription")
        return cls(
            **_patient_and_order(ds),
            study_description=procedure,
            study_uid=_text(ds, "StudyInstanceUID"),
            study_id=_text(ds, "StudyID") or _text(ds, "RequestedProcedureID")[:16],
            requested_procedure_id=_text(ds, "RequestedProcedureID"),
            requested_procedure_description=procedure,
            scheduled_step_id=_text(step, "ScheduledProcedureStepID") if step else "",
            scheduled_step_description=_text(step, "ScheduledProcedureStepDescription") if step else "",
            referenced_studies=refs,
            origin=WORKLIST,
            source_ae=source_ae,
        ).normalized()

    @classmethod
    def from_pacs_study(cls, ds: Any, source_ae: str = "") -> "StudyContext":
        """A context from a Study Root C-FIND result: new images join that study."""
        return cls(
            **_patient_and_order(ds),
            study_description=_text(ds, "StudyDescription"),
            study_uid=_text(ds, "StudyInstanceUID"),
            study_id=_text(ds, "StudyID"),
            study_date=_text(ds, "StudyDate"),
            study_time=_text(ds, "StudyTime"),
            origin=PACS,
            source_ae=source_ae,
        ).normalized()

    def with_reading(self, utf8: "StudyContext") -> "StudyContext":
        """This context (as declared) noting in ``misread`` where ``utf8``, the same item read as UTF-8, differs."""
        misread = {f.name: getattr(utf8, f.name) for f in fields(self)
                   if isinstance(getattr(self, f.name), str) and f.name not in ("charset", "origin", "source_ae")
                   and getattr(utf8, f.name) != getattr(self, f.name)}
        return replace(self, misread=misread)

    def as_utf8(self) -> "StudyContext":
        """The operator's choice: the values of ``misread`` read as UTF-8."""
        return replace(self, **self.misread, charset="ISO_IR 192", misread={})

    def as_declared(self) -> "StudyContext":
        """The operator's choice: the values as the source declared them."""
        return replace(self, misread={})

    def with_edits(self, **changes: Any) -> "StudyContext":
        """A copy with ``changes`` applied; edited demographics of a worklist or
        PACS context keep their previous values in ``original``."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown study fields: {', '.join(sorted(unknown))}")
        original = dict(self.original)
        edited = replace(self, **changes).normalized()
        if self.origin != MANUAL:
            for name, keyword in DEMOGRAPHICS.items():
                before, after = getattr(self, name), getattr(edited, name)
                if before != after and keyword not in original:
                    original[keyword] = before
        return replace(edited, original=original)

    def normalized(self) -> "StudyContext":
        """Trim spaces, upper-case codes and accept ``YYYY-MM-DD`` dates."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and f.name != "charset":
                value = value.strip()
            values[f.name] = value
        values["sex"] = values["sex"].upper()
        values["modality"] = values["modality"].upper()
        for name in ("birth_date", "study_date"):
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", values[name]):
                values[name] = values[name].replace("-", "")
        return replace(self, **values)

    # -- checks -----------------------------------------------------------

    def problems(self) -> list[str]:
        """Every invalid field, one sentence each (empty when all is well)."""
        out: list[str] = []
        if self.misread:
            names = ", ".join(name.replace("_", " ") for name in self.misread)
            out.append(f"character set: {names} came declared Latin-1 but hold UTF-8 bytes; "
                       "choose whether to use them as declared or read as UTF-8")
        if not self.patient_id:
            out.append("patient ID: is empty; give the patient's ID (or pick a worklist item)")
        if not self.patient_name:
            out.append("patient name: is empty; give it as Family^Given")
        out += _check_pn("patient name", self.patient_name)
        out += _check_pn("referring physician", self.referring_physician)
        for label, value, limit in (
            ("patient ID", self.patient_id, 64),
            ("issuer of patient ID", self.issuer, 64),
            ("accession number", self.accession, 16),
            ("study description", self.study_description, 64),
            ("study ID", self.study_id, 16),
            ("requested procedure ID", self.requested_procedure_id, 16),
            ("requested procedure description", self.requested_procedure_description, 64),
            ("scheduled procedure step ID", self.scheduled_step_id, 16),
            ("scheduled procedure step description", self.scheduled_step_description, 64),
        ):
            out += _check_text(label, value, limit)
        out += _check_date("birth date", self.birth_date, not_after=dt.date.today())
        out += _check_date("study date", self.study_date)
        if self.study_time and not re.fullmatch(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?", self.study_time):
            out.append(f"study time: {self.study_time!r} is not a time; write HHMMSS")
        if self.sex not in ("", "M", "F", "O"):
            out.append(f"sex: {self.sex!r} is not M, F or O (other); leave it empty if unknown")
        if self.study_uid:
            out += check_uid("study instance UID", self.study_uid)
        if self.modality and not re.fullmatch(r"[A-Z0-9_ ]{1,16}", self.modality):
            out.append(f"modality: {self.modality!r} is not a DICOM modality code such as OT, DOC, XC")
        return out

    def validate(self, source: str = "") -> None:
        """Raise ``StudyError`` naming every invalid field."""
        problems = self.problems()
        if problems:
            raise StudyError(problems, source)


def check_uid(label: str, value: str) -> list[str]:
    """A DICOM UID: digits and dots, no leading zeros, at most 64 characters."""
    if len(value) > 64:
        return [f"{label}: is {len(value)} characters; a UID has at most 64"]
    if not re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+", value):
        return [f"{label}: {value!r} is not a UID (digits separated by dots, no leading zeros)"]
    return []


def _check_text(label: str, value: str, limit: int) -> list[str]:
    out = []
    if len(value) > limit:
        out.append(f"{label}: is {len(value)} characters long; at most {limit} fit")
    if "\\" in value:
        out.append(f"{label}: contains a backslash, which DICOM does not allow here")
    if any(ord(c) < 32 for c in value):
        out.append(f"{label}: contains control characters (tab, newline ...); remove them")
    return out


def _check_pn(label: str, value: str) -> list[str]:
    if not value:
        return []
    groups = value.split("=")
    out = []
    if len(groups) > 3:
        out.append(f"{label}: has {len(groups)} '='-separated groups; at most 3 (alphabetic=ideographic=phonetic)")
    for group in groups:
        if len(group) > 64:
            out.append(f"{label}: the part {group[:20]!r}... is {len(group)} characters; at most 64 per group")
        if group.count("^") > 4:
            out.append(f"{label}: {group!r} has more than 5 '^'-separated parts (Family^Given^Middle^Prefix^Suffix)")
    if "\\" in value:
        out.append(f"{label}: contains a backslash, which a person name may not contain")
    if any(ord(c) < 32 for c in value):
        out.append(f"{label}: contains control characters (tab, newline ...); remove them")
    return out


def _check_date(label: str, value: str, not_after: dt.date | None = None) -> list[str]:
    if not value:
        return []
    try:
        date = dt.datetime.strptime(value, "%Y%m%d").date() if re.fullmatch(r"\d{8}", value) else None
    except ValueError:
        date = None
    if date is None:
        return [f"{label}: {value!r} is not a valid date; write YYYYMMDD or YYYY-MM-DD"]
    if not_after and date > not_after:
        return [f"{label}: {value} is in the future"]
    if date.year < 1850:
        return [f"{label}: {value} is before 1850; check the year"]
    return []


def _first(ds: Any, keyword: str) -> Any:
    seq = ds.get(keyword, None)
    return seq[0] if seq else None


def _patient_and_order(ds: Any) -> dict[str, Any]:
    """The fields a worklist item and a PACS study both carry, in the dataset's character set."""
    keywords = {"patient_name": "PatientName", "patient_id": "PatientID", "issuer": "IssuerOfPatientID",
                "birth_date": "PatientBirthDate", "sex": "PatientSex", "accession": "AccessionNumber",
                "referring_physician": "ReferringPhysicianName"}
    return {field: _text(ds, keyword) for field, keyword in keywords.items()} | {"charset": _charset(ds)}


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword, None) if ds is not None else None
    if value is None:
        return ""
    return str(value.value if hasattr(value, "value") else value)


def _charset(ds: Any) -> str | tuple[str, ...]:
    value = ds.get("SpecificCharacterSet", None)
    if value is None:
        return ""
    value = value.value if hasattr(value, "value") else value
    return value if isinstance(value, str) else tuple(value)
