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
    where the objects carry it (Patient and Patient Study, General Study, the
    Request Attributes Sequence item, General Series, written by the builder
    per object family). ``request``: the keyword it is also written as in the
    Request Attributes Sequence item, when known ('' when it is not).
    ``performed``: the keyword it is also written as among the General
    Series' Performed Procedure Step attributes. ``tracked``: an edit of a
    value that came from a worklist or PACS is recorded in the Original
    Attributes Sequence. ``worklist``/``query``: where a Modality Worklist
    item and a Study Root study-level C-FIND result hold it ('' when they do
    not). ``limit``: characters (per component group for PN). Sequences
    (VR SQ) travel as their items in the DICOM JSON model (PS3.18 F.2), so a
    code or an issuer keeps every attribute the source gave.
    """

    field: str
    keyword: str
    vr: str
    limit: int
    type: str
    module: str
    request: str
    performed: str
    tracked: bool
    worklist: str
    query: str
    label: str


def _row(field: str, keyword: str, vr: str, limit: int, type_: str, module: str, label: str, *,
         worklist: str | None = None, query: str | None = "", request: str = "", performed: str = "",
         tracked: bool = False) -> Attribute:
    """A row; ``worklist`` defaults to the keyword (a worklist item holds most attributes as objects do)."""
    return Attribute(field, keyword, vr, limit, type_, module, request, performed, tracked,
                     keyword if worklist is None else worklist, query or "", label)


ATTRIBUTES = (
    # IHE RAD TF-2 Appendix A (Scheduled Workflow): what a worklist item gives, where each object carries it.
    _row("patient_name", "PatientName", "PN", 64, "2", PATIENT, "patient name", query="PatientName", tracked=True),
    _row("patient_id", "PatientID", "LO", 64, "2", PATIENT, "patient ID", query="PatientID", tracked=True),
    _row("issuer", "IssuerOfPatientID", "LO", 64, "3", PATIENT, "issuer of patient ID",
         query="IssuerOfPatientID", tracked=True),
    _row("issuer_qualifiers", "IssuerOfPatientIDQualifiersSequence", "SQ", 0, "3", PATIENT,
         "issuer of patient ID qualifiers"),
    _row("other_patient_ids", "OtherPatientIDsSequence", "SQ", 0, "3", PATIENT, "other patient IDs"),
    _row("birth_date", "PatientBirthDate", "DA", 8, "2", PATIENT, "birth date", query="PatientBirthDate", tracked=True),
    _row("sex", "PatientSex", "CS", 16, "2", PATIENT, "sex", query="PatientSex", tracked=True),
    _row("patient_age", "PatientAge", "AS", 4, "3", PATIENT, "patient age"),
    _row("patient_weight", "PatientWeight", "DS", 16, "3", PATIENT, "patient weight (kg)"),
    _row("patient_size", "PatientSize", "DS", 16, "3", PATIENT, "patient size (m)"),
    _row("admission_id", "AdmissionID", "LO", 64, "3", PATIENT, "admission ID"),
    _row("accession", "AccessionNumber", "SH", 16, "2", STUDY, "accession number", query="AccessionNumber",
         request="AccessionNumber", tracked=True),
    _row("issuer_of_accession", "IssuerOfAccessionNumberSequence", "SQ", 0, "3", STUDY, "issuer of accession number",
         request="IssuerOfAccessionNumberSequence"),
    _row("referring_physician", "ReferringPhysicianName", "PN", 64, "2", STUDY, "referring physician",
         query="ReferringPhysicianName"),
    _row("study_description", "StudyDescription", "LO", 64, "3", STUDY, "study description",
         worklist="RequestedProcedureDescription", query="StudyDescription"),
    _row("procedure_codes", "ProcedureCodeSequence", "SQ", 0, "3", STUDY, "procedure code",
         worklist="RequestedProcedureCodeSequence", request="RequestedProcedureCodeSequence"),
    _row("study_uid", "StudyInstanceUID", "UI", 64, "1", STUDY, "study instance UID", query="StudyInstanceUID",
         request="StudyInstanceUID"),
    _row("study_id", "StudyID", "SH", 16, "2", STUDY, "study ID", query="StudyID"),
    _row("study_date", "StudyDate", "DA", 8, "2", STUDY, "study date", worklist="", query="StudyDate"),
    _row("study_time", "StudyTime", "TM", 16, "2", STUDY, "study time", worklist="", query="StudyTime"),
    _row("referenced_studies", "ReferencedStudySequence", "SQ", 0, "3", STUDY, "referenced study"),
    _row("requested_procedure_id", "RequestedProcedureID", "SH", 16, "1", REQUEST, "requested procedure ID"),
    _row("requested_procedure_description", "RequestedProcedureDescription", "LO", 64, "3", REQUEST,
         "requested procedure description"),
    _row("scheduled_step_id", "ScheduledProcedureStepID", "SH", 16, "1", REQUEST, "scheduled procedure step ID",
         worklist=STEP + "ScheduledProcedureStepID"),
    _row("scheduled_step_description", "ScheduledProcedureStepDescription", "LO", 64, "3", REQUEST,
         "scheduled procedure step description", worklist=STEP + "ScheduledProcedureStepDescription",
         performed="PerformedProcedureStepDescription"),
    _row("scheduled_protocol_codes", "ScheduledProtocolCodeSequence", "SQ", 0, "3", REQUEST, "scheduled protocol code",
         worklist=STEP + "ScheduledProtocolCodeSequence", performed="PerformedProtocolCodeSequence"),
    _row("modality", "Modality", "CS", 16, "1", SERIES, "modality", worklist=STEP + "Modality"),
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
    ``=``). Dates are ``YYYYMMDD``. Sequence fields hold their items in the
    DICOM JSON model (``Dataset.to_json_dict()``). ``charset`` is the Specific Character Set
    the data came in (a worklist's own), preferred when writing if it can hold
    every value. ``original`` maps DICOM keywords to the values that edits
    replaced. ``misread`` maps fields to their UTF-8 reading when the source
    declared Latin-1 but sent UTF-8 bytes: until the operator chooses
    (``as_utf8`` or ``as_declared``) the context must not be used.
    """

    patient_name: str = ""
    patient_id: str = ""
    issuer: str = ""
    issuer_qualifiers: tuple[dict[str, Any], ...] = ()
    other_patient_ids: tuple[dict[str, Any], ...] = ()
    birth_date: str = ""
    sex: str = ""
    patient_age: str = ""
    patient_weight: str = ""
    patient_size: str = ""
    admission_id: str = ""
    accession: str = ""
    issuer_of_accession: tuple[dict[str, Any], ...] = ()
    referring_physician: str = ""
    study_description: str = ""
    procedure_codes: tuple[dict[str, Any], ...] = ()
    study_uid: str = ""
    study_id: str = ""
    study_date: str = ""
    study_time: str = ""
    requested_procedure_id: str = ""
    requested_procedure_description: str = ""
    scheduled_step_id: str = ""
    scheduled_step_description: str = ""
    scheduled_protocol_codes: tuple[dict[str, Any], ...] = ()
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
        for a in ATTRIBUTES:
            if a.vr == "SQ" and a.field != "referenced_studies":
                data[a.field] = [dict(item) for item in data[a.field]]
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
        for a in ATTRIBUTES:
            if a.vr == "SQ" and a.field != "referenced_studies":
                values[a.field] = tuple(dict(item) for item in values.get(a.field, ()))
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
        values["patient_age"] = values["patient_age"].upper()
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


def check_person_name(label: str, value: str) -> list[str]:
    """A DICOM person name (PN): component groups of at most 64 characters, no backslash or controls."""
    return _check_pn(label, value, 64)


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
    character set; for a sequence, its items (``sequence_from``)."""
    *outer, keyword = path.split(">")
    for sequence in outer:
        items = ds.get(sequence, None) if ds is not None else None
        ds = items[0] if items else None
    value = ds.get(keyword, None) if ds is not None else None
    if vr == "SQ":
        return sequence_from(keyword, value or ())
    if value is None:
        return ""
    return str(value.value if hasattr(value, "value") else value)


def sequence_from(keyword: str, items: Any) -> tuple:
    """A context's value for a sequence: ``ReferencedStudy`` tuples for the Referenced Study
    Sequence, else each item in the DICOM JSON model."""
    if keyword == "ReferencedStudySequence":
        return tuple(ReferencedStudy(str(item.get("ReferencedSOPClassUID", "")),
                                     str(item.get("ReferencedSOPInstanceUID", "")))
                     for item in items if item.get("ReferencedSOPInstanceUID"))
    return tuple(item.to_json_dict() for item in items)


def sequence_items(value: tuple) -> list[Any]:
    """The datasets of a context's sequence value (the inverse of ``sequence_from``)."""
    from pydicom.dataset import Dataset

    items = []
    for entry in value:
        if isinstance(entry, ReferencedStudy):
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = entry.sop_class_uid, entry.sop_instance_uid
        else:
            item = Dataset.from_json(entry)
        items.append(item)
    return items


def _check_decimal(attribute: Attribute, value: str) -> list[str]:
    if value and (len(value) > 16 or not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", value)):
        return [f"{attribute.label}: {value!r} is not a decimal number of at most 16 characters"]
    return []


def _check_age(attribute: Attribute, value: str) -> list[str]:
    if value and not re.fullmatch(r"\d{3}[DWMY]", value):
        return [f"{attribute.label}: {value!r} is not an age such as 042Y, 011M, 003W or 005D"]
    return []


_CHECKS = {
    "PN": lambda a, value: _check_pn(a.label, value, a.limit),
    "DS": _check_decimal,
    "AS": _check_age,
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
