"""StudyContext: the patient and order data every object of a study carries.

``ATTRIBUTES`` is the one table of the context's fields: the DICOM attribute
each one is, its VR and length, the module the objects carry it in, whether
an edit is recorded in the Original Attributes Sequence, and where a
worklist item and a PACS study result hold it. Reading (``from_worklist``,
``from_pacs_study``), checking (``validate``), edit tracking (``with_edits``),
writing (``kiosk.dicomize.modules``) and the JSON form (``to_json``/
``from_json``, what the session store keeps) all follow it.

A context comes from a worklist item, a study found on the PACS or the
keyboard (``manual``). ``validate()`` raises one ``StudyError`` listing each
invalid field on its own line. ``charset`` keeps the Specific Character Set
the data came in, so objects built from the same item carry the same one
whichever way the context travelled.

Only the readers touch pydicom datasets, and only through attribute access:
this module imports nothing heavy.
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

PATIENT, STUDY, REQUEST, SERIES = "patient", "study", "request", "series"
# Where a value sits in a dataset: a keyword, or "Sequence>Keyword" for the first item of a sequence.
STEP = "ScheduledProcedureStepSequence>"


@dataclass(frozen=True)
class Attribute:
    """One row of the study-context table: a ``StudyContext`` field and the DICOM attribute it is.

    ``type``: its DICOM Type there (1: always a value, the batch supplies a
    default; 2: written even when empty; 3: only when known). ``module``:
    where the objects carry it (Patient, General Study, the Request Attributes
    Sequence item, General Series, written by the builder per object family);
    ``request``: also copied into the Request Attributes Sequence item when
    known. ``tracked``: an edit of a value that came from a worklist or PACS
    is recorded in the Original Attributes Sequence. ``worklist``/``query``: where a Modality Worklist item and a
    Study Root study-level C-FIND result hold it ('' when they do not).
    ``limit``: characters (per component group for PN).
    """

    field: str
    keyword: str
    vr: str
    limit: int
    type: str
    module: str
    request: bool
    tracked: bool
    worklist: str
    query: str
    label: str


ATTRIBUTES = (
    # field, keyword, VR, limit, type, module, request, tracked, worklist item, PACS study result, label
    Attribute("patient_name", "PatientName", "PN", 64, "2", PATIENT, False, True,
              "PatientName", "PatientName", "patient name"),
    Attribute("patient_id", "PatientID", "LO", 64, "2", PATIENT, False, True,
              "PatientID", "PatientID", "patient ID"),
    Attribute("issuer", "IssuerOfPatientID", "LO", 64, "3", PATIENT, False, True,
              "IssuerOfPatientID", "IssuerOfPatientID", "issuer of patient ID"),
    Attribute("birth_date", "PatientBirthDate", "DA", 8, "2", PATIENT, False, True,
              "PatientBirthDate", "PatientBirthDate", "birth date"),
    Attribute("sex", "PatientSex", "CS", 16, "2", PATIENT, False, True,
              "PatientSex", "PatientSex", "sex"),
    Attribute("accession", "AccessionNumber", "SH", 16, "2", STUDY, True, True,
              "AccessionNumber", "AccessionNumber", "accession number"),
    Attribute("referring_physician", "ReferringPhysicianName", "PN", 64, "2", STUDY, False, False,
              "ReferringPhysicianName", "ReferringPhysicianName", "referring physician"),
    Attribute("study_description", "StudyDescription", "LO", 64, "3", STUDY, False, False,
              "RequestedProcedureDescription", "StudyDescription", "study description"),
    Attribute("study_uid", "StudyInstanceUID", "UI", 64, "1", STUDY, True, False,
              "StudyInstanceUID", "StudyInstanceUID", "study instance UID"),
    Attribute("study_id", "StudyID", "SH", 16, "2", STUDY, False, False,
              "StudyID", "StudyID", "study ID"),
    Attribute("study_date", "StudyDate", "DA", 8, "2", STUDY, False, False,
              "", "StudyDate", "study date"),
    Attribute("study_time", "StudyTime", "TM", 16, "2", STUDY, False, False,
              "", "StudyTime", "study time"),
    Attribute("referenced_studies", "ReferencedStudySequence", "SQ", 0, "3", STUDY, False, False,
              "ReferencedStudySequence", "", "referenced study"),
    Attribute("requested_procedure_id", "RequestedProcedureID", "SH", 16, "1", REQUEST, False, False,
              "RequestedProcedureID", "", "requested procedure ID"),
    Attribute("requested_procedure_description", "RequestedProcedureDescription", "LO", 64, "3", REQUEST, False, False,
              "RequestedProcedureDescription", "", "requested procedure description"),
    Attribute("scheduled_step_id", "ScheduledProcedureStepID", "SH", 16, "1", REQUEST, False, False,
              STEP + "ScheduledProcedureStepID", "", "scheduled procedure step ID"),
    Attribute("scheduled_step_description", "ScheduledProcedureStepDescription", "LO", 64, "3", REQUEST, False, False,
              STEP + "ScheduledProcedureStepDescription", "", "scheduled procedure step description"),
    Attribute("modality", "Modality", "CS", 16, "1", SERIES, False, False,
              "", "", "modality"),
)


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
        """A context from a Modality Worklist item (IHE RAD TF-2 Appendix A mapping, ``Attribute.worklist``)."""
        return cls._read(ds, "worklist", WORKLIST, source_ae)

    @classmethod
    def from_pacs_study(cls, ds: Any, source_ae: str = "") -> "StudyContext":
        """A context from a Study Root C-FIND result (``Attribute.query``): new images join that study."""
        return cls._read(ds, "query", PACS, source_ae)

    @classmethod
    def _read(cls, ds: Any, column: str, origin: str, source_ae: str) -> "StudyContext":
        values = {a.field: _read(ds, getattr(a, column), a.vr) for a in ATTRIBUTES if getattr(a, column)}
        return cls(**values, charset=_charset(ds), origin=origin, source_ae=source_ae).normalized()

    # -- the JSON form (session store, any file holding a context) ----------

    def to_json(self) -> dict[str, Any]:
        """The context as JSON-ready data: every field by name, the source's character set included."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["referenced_studies"] = [{"sop_class_uid": r.sop_class_uid, "sop_instance_uid": r.sop_instance_uid}
                                      for r in self.referenced_studies]
        data["charset"] = self.charset if isinstance(self.charset, str) else list(self.charset)
        data["original"], data["misread"] = dict(self.original), dict(self.misread)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StudyContext":
        """Back from ``to_json`` (unknown keys, e.g. of older kiosk versions, are left out);
        ``ValueError`` when ``data`` is no such object."""
        if not isinstance(data, dict):
            raise ValueError(f"the study context is a JSON {type(data).__name__}, not an object")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        values["referenced_studies"] = tuple(ReferencedStudy(str(r["sop_class_uid"]), str(r["sop_instance_uid"]))
                                             for r in values.get("referenced_studies", ()))
        if isinstance(values.get("charset"), list):
            values["charset"] = tuple(values["charset"])
        return cls(**values)

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
            for a in ATTRIBUTES:
                before, after = getattr(self, a.field), getattr(edited, a.field)
                if a.tracked and before != after and a.keyword not in original:
                    original[a.keyword] = before
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
        for name in (a.field for a in ATTRIBUTES if a.vr == "DA"):
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
        for a in ATTRIBUTES:
            out += _CHECKS.get(a.vr, _no_check)(a, getattr(self, a.field))
        if self.sex not in ("", "M", "F", "O"):
            out.append(f"sex: {self.sex!r} is not M, F or O (other); leave it empty if unknown")
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


def _no_check(attribute: Attribute, value: Any) -> list[str]:
    return []


def _check_time(attribute: Attribute, value: str) -> list[str]:
    if value and not re.fullmatch(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?", value):
        return [f"{attribute.label}: {value!r} is not a time; write HHMMSS"]
    return []


def _check_date_of(attribute: Attribute, value: str) -> list[str]:
    # Only the patient's date (of birth) cannot lie ahead.
    return _check_date(attribute.label, value, not_after=dt.date.today() if attribute.module == PATIENT else None)


def _check_text(label: str, value: str, limit: int) -> list[str]:
    out = []
    if len(value) > limit:
        out.append(f"{label}: is {len(value)} characters long; at most {limit} fit")
    if "\\" in value:
        out.append(f"{label}: contains a backslash, which DICOM does not allow here")
    if any(ord(c) < 32 for c in value):
        out.append(f"{label}: contains control characters (tab, newline ...); remove them")
    return out


def _check_pn(label: str, value: str, limit: int) -> list[str]:
    if not value:
        return []
    groups = value.split("=")
    out = []
    if len(groups) > 3:
        out.append(f"{label}: has {len(groups)} '='-separated groups; at most 3 (alphabetic=ideographic=phonetic)")
    for group in groups:
        if len(group) > limit:
            out.append(f"{label}: the part {group[:20]!r}... is {len(group)} characters; at most {limit} per group")
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


def _read(ds: Any, path: str, vr: str) -> Any:
    """The value at ``path`` ("Keyword" or "Sequence>Keyword", first item) as text, in the dataset's
    character set; a ``ReferencedStudy`` tuple for the Referenced Study Sequence."""
    *outer, keyword = path.split(">")
    for sequence in outer:
        items = ds.get(sequence, None) if ds is not None else None
        ds = items[0] if items else None
    value = ds.get(keyword, None) if ds is not None else None
    if vr == "SQ":
        return tuple(ReferencedStudy(str(item.get("ReferencedSOPClassUID", "")),
                                     str(item.get("ReferencedSOPInstanceUID", "")))
                     for item in value or () if item.get("ReferencedSOPInstanceUID"))
    if value is None:
        return ""
    return str(value.value if hasattr(value, "value") else value)


_CHECKS = {
    "PN": lambda a, value: _check_pn(a.label, value, a.limit),
    "LO": lambda a, value: _check_text(a.label, value, a.limit),
    "SH": lambda a, value: _check_text(a.label, value, a.limit),
    "DA": _check_date_of,
    "TM": _check_time,
    "UI": lambda a, value: check_uid(a.label, value) if value else [],
}


def _charset(ds: Any) -> str | tuple[str, ...]:
    value = ds.get("SpecificCharacterSet", None)
    if value is None:
        return ""
    value = value.value if hasattr(value, "value") else value
    return value if isinstance(value, str) else tuple(value)
