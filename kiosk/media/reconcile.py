"""A medium's object put under the local patient (IHE RAD IRWF.b, Imported Objects Stored [RAD-61]).

``reconcile`` coerces one data set in place:

- the patient (Patient's Name, Patient ID, Issuer of Patient ID and its qualifiers, Birth Date,
  Sex) becomes the local one; the foreign Patient ID and its issuer join the Other Patient IDs
  Sequence (items already there are kept);
- the order: a scheduled import (a worklist item) gets the item's Accession Number, Issuer of
  Accession Number and Request Attributes Sequence; an unscheduled one keeps no foreign order
  identifiers (the Accession Number is the typed one or empty, the medium's Request Attributes
  Sequence goes): another enterprise's numbers mean something else here;
- Study and Series Instance UIDs are kept, or with a ``UidMap`` replaced consistently wherever
  they appear (references in sequences too); SOP Class and SOP Instance UIDs are always kept;
- every changed attribute's previous value goes into one new Original Attributes Sequence item
  (Reason COERCE; items already there are kept);
- the Specific Character Set is chosen afresh so the local names and every value already there
  are written exactly (``kiosk.dicomize.charset``).

``compare`` gives the rows the operator checks before importing (the medium's patient against
the local one). Nothing here reads or writes files.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from kiosk import __version__
from kiosk.dicomize.charset import apply_charset
from kiosk.dicomize.modules import add_request_attributes
from kiosk.dicomize.uids import MODEL_NAME
from kiosk.media.model import MediaPatient, MediaStudy
from kiosk.study import StudyContext, sequence_items

REASON = "COERCE"
TEXT_ID = "TEXT"  # Type of Patient ID (0010,0022)
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID")
# Sequences whose UIDs are not the medium's own: earlier values (history), the local order.
_NOT_REMAPPED = ("OriginalAttributesSequence", "RequestAttributesSequence")
_UID_TAGS = {tag_for_keyword(k) for k in UID_KEYWORDS}
# The namespace of the 2.25 UIDs a remapped import makes (uuid5 of it, the patient and the old UID).
NAMESPACE = uuid.UUID("5f0e7a52-3c1b-4b8e-9d47-6a0e1f9c2b11")


@dataclass(frozen=True)
class Row:
    """One line of the reconciliation card: what the medium says, what the object will say."""

    label: str
    medium: str
    local: str
    differs: bool


def compare(patient: MediaPatient, study: MediaStudy, context: StudyContext) -> list[Row]:
    """The medium's patient and study against the local context, attribute by attribute."""
    pairs = (("Patient Name", patient.name, context.patient_name),
             ("Patient ID", patient.patient_id, context.patient_id),
             ("Issuer", patient.issuer, context.issuer),
             ("Birth Date", patient.birth_date, context.birth_date),
             ("Sex", patient.sex, context.sex),
             ("Accession", study.accession, context.accession))
    return [Row(label, medium, local, medium != local) for label, medium, local in pairs]


@dataclass(frozen=True)
class UidMap:
    """Study and Series Instance UIDs replaced consistently: each old UID gives the same new one for
    the same local patient (``salt``), so importing the same CD again does not make a second copy.
    ``root``: the configured UID root (``[local] uid_root``); without it, 2.25 UUID UIDs."""

    salt: str
    root: str = ""

    @classmethod
    def for_patient(cls, context: StudyContext, root: str = "") -> "UidMap":
        return cls(f"{context.issuer}\\{context.patient_id}", root)

    def __call__(self, old: str) -> str:
        if self.root:
            return str(generate_uid(f"{self.root}.", entropy_srcs=[self.salt, old]))
        return f"2.25.{uuid.uuid5(NAMESPACE, f'{self.salt}|{old}').int}"


def reconcile(ds: Dataset, context: StudyContext, *, scheduled: bool, uid_map: UidMap | None = None,
              when: dt.datetime, source: str | None = None) -> Dataset:
    """Coerce ``ds`` (a medium's object, read whole) to the local ``context``, in place; returns it.

    ``scheduled``: the context is a worklist item (an import scheduled by the RIS). ``source``: the
    Source of Previous Values (default: the object's Institution Name, where it was made)."""
    preferred = ds.get("SpecificCharacterSet", "")
    ds.decode()  # every text value in Unicode, under the character set it came in, before any changes
    changes = _Changes(ds)
    patient = {
        "PatientName": context.patient_name, "PatientID": context.patient_id,
        "IssuerOfPatientID": context.issuer or None,
        "IssuerOfPatientIDQualifiersSequence": _items(context.issuer_qualifiers),
        "PatientBirthDate": context.birth_date, "PatientSex": context.sex,
    }
    other_ids = _other_patient_ids(ds, context)
    for keyword, value in patient.items():
        changes.set(keyword, value)
    if other_ids is not None:
        changes.set("OtherPatientIDsSequence", other_ids)
    changes.set("AccessionNumber", context.accession if scheduled or context.accession else "")
    if scheduled:
        changes.set("IssuerOfAccessionNumberSequence", _items(context.issuer_of_accession))
        request = Dataset()
        add_request_attributes(request, context)
        changes.set("RequestAttributesSequence", request.get("RequestAttributesSequence"))
    else:
        changes.set("IssuerOfAccessionNumberSequence", None)
        changes.set("RequestAttributesSequence", None)
    if uid_map is not None:
        _remap(ds, uid_map, changes)
    if changes.modified:
        _note_original(ds, changes.modified, when,
                       str(ds.get("InstitutionName", "") or "") if source is None else source)
    apply_charset(ds, preferred)
    return ds


def _items(value: tuple) -> Sequence | None:
    """A context's sequence value as a pydicom Sequence, None (absent) when empty."""
    return Sequence(sequence_items(value)) if value else None


class _Changes:
    """Sets top-level attributes, keeping the previous value of each that changes."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.modified = Dataset()

    def set(self, keyword: str, value: Any) -> None:
        """``value`` None (or an empty sequence) removes the attribute."""
        ds, tag = self.ds, tag_for_keyword(keyword)
        present = tag in ds
        if isinstance(value, Sequence) and not value:
            value = None
        if value is None and (not present or ds[tag].is_empty):  # nothing there worth keeping
            if present:
                del ds[tag]
            return
        if present and value is not None and _same(ds[tag].value, value):
            return
        if not present and value == "":  # a Type 2 attribute written empty: nothing was there to keep
            setattr(ds, keyword, value)
            return
        self.keep(keyword)
        if value is None:
            del ds[tag]
        else:
            setattr(ds, keyword, value)

    def keep(self, keyword: str) -> None:
        """Note the current value of ``keyword`` (zero length when absent), once."""
        tag = tag_for_keyword(keyword)
        if tag in self.modified:
            return
        if tag in self.ds:
            self.modified.add(copy.deepcopy(self.ds[tag]))
        else:
            vr = dictionary_VR(tag)
            self.modified.add(DataElement(tag, vr, Sequence() if vr == "SQ" else None))


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, Sequence) or isinstance(new, Sequence):
        return (isinstance(old, Sequence) and isinstance(new, Sequence)
                and [i.to_json_dict() for i in old] == [i.to_json_dict() for i in new])
    return str(old if old is not None else "") == str(new if new is not None else "")


def _other_patient_ids(ds: Dataset, context: StudyContext) -> Sequence | None:
    """The Other Patient IDs Sequence: the medium's items, the foreign ID, the local context's own
    others; each (ID, issuer) once and never the local one. None when nothing changes."""
    local = (context.patient_id, context.issuer)
    foreign = Dataset()
    foreign.PatientID = str(ds.get("PatientID", "") or "")
    if ds.get("IssuerOfPatientID"):
        foreign.IssuerOfPatientID = str(ds.IssuerOfPatientID)
    if ds.get("IssuerOfPatientIDQualifiersSequence"):
        foreign.IssuerOfPatientIDQualifiersSequence = copy.deepcopy(ds.IssuerOfPatientIDQualifiersSequence)
    foreign.TypeOfPatientID = TEXT_ID
    existing = list(ds.get("OtherPatientIDsSequence", None) or ())
    candidates = [*existing, *([foreign] if foreign.PatientID else []), *sequence_items(context.other_patient_ids)]
    seen, items = {local}, []
    for item in candidates:
        key = (str(item.get("PatientID", "") or ""), str(item.get("IssuerOfPatientID", "") or ""))
        if key in seen or not key[0]:
            continue
        seen.add(key)
        items.append(item)
    if len(items) == len(existing):
        return None
    return Sequence(copy.deepcopy(items))


def _remap(ds: Dataset, uid_map: UidMap, changes: _Changes) -> None:
    """Study and Series Instance UIDs replaced wherever they appear; a top-level sequence holding one
    is kept whole in the Original Attributes (PS3.3 C.12.1.1.9.1)."""
    for keyword in UID_KEYWORDS:
        if keyword in ds:
            changes.set(keyword, uid_map(str(ds.data_element(keyword).value)))
    for elem in list(ds):
        if elem.VR == "SQ" and elem.keyword not in _NOT_REMAPPED and _holds_uids(elem.value):
            changes.keep(elem.keyword)
            _remap_nested(elem.value, uid_map)


def _holds_uids(items: Sequence) -> bool:
    return any(elem.tag in _UID_TAGS for item in items for elem in item.iterall())


def _remap_nested(items: Sequence, uid_map: UidMap) -> None:
    for item in items:
        for elem in item.iterall():
            if elem.tag in _UID_TAGS and elem.value:
                elem.value = uid_map(str(elem.value))


def _note_original(ds: Dataset, modified: Dataset, when: dt.datetime, source: str) -> None:
    """One new Original Attributes Sequence item holding ``modified`` (earlier items kept)."""
    item = Dataset()
    item.SourceOfPreviousValues = source[:64]
    item.AttributeModificationDateTime = when.strftime("%Y%m%d%H%M%S") + (when.strftime("%z") or "")
    item.ModifyingSystem = f"{MODEL_NAME} {__version__}"
    item.ReasonForTheAttributeModification = REASON
    item.ModifiedAttributesSequence = Sequence([modified])
    items = list(ds.get("OriginalAttributesSequence", None) or ())
    ds.OriginalAttributesSequence = Sequence([*items, item])
