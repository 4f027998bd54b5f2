"""Whose document is it: the ``[inbox]`` rules read a patient ID and/or accession number from the
document's name (``name_pattern``) or, failing that, a PDF's text (``text_pattern``); ``match``
then looks for exactly one worklist item or PACS patient with them.

Matching, in order:

1. the worklist (``[worklist]``): by accession number (any date), or by patient ID (today's
   orders for this station), both when both were read; exactly one item files the document
   under that order (a scheduled document);
2. when no worklist item matches, the PACS (``[query]``): by accession number, exactly one study
   files it into that study; by patient ID, answers that all share one Patient ID, Issuer and
   Name are one patient, whose new study it starts.

Anything else (no rule matched, nothing or several found, a server that did not answer) holds the
document for a person, with the reason. A reason quotes a key only when it came from the name
(which the Inbox shows anyway): never what was read from inside a document.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kiosk.errors import KioskError
from kiosk.study import PACS, StudyContext

if TYPE_CHECKING:
    from kiosk.config import Config

log = logging.getLogger(__name__)

TEXT_PAGES = 5  # pages of a PDF whose text the text_pattern reads (the patient is named up front)
TEXT_CHARS = 200_000
LIMIT = 20  # answers enough to tell one from several
_PATIENT_KEYS = ("patient_name", "patient_id", "issuer", "issuer_qualifiers", "other_patient_ids", "birth_date",
                 "sex", "charset")


@dataclass(frozen=True)
class Keys:
    """What a rule read; ``where``: "name" or "text" (the PDF's)."""

    patient_id: str = ""
    accession: str = ""
    where: str = "name"

    def describe(self) -> str:
        """The keys for a reason: quoted when read from the name, else only named."""
        if self.where != "name":
            parts = [label for label, value in (("patient ID", self.patient_id), ("accession number", self.accession))
                     if value]
            return f"the {' and '.join(parts)} in the PDF's text"
        parts = [f"{label} {value}" for label, value in (("ID", self.patient_id), ("accession", self.accession))
                 if value]
        return " and ".join(parts)


@dataclass(frozen=True)
class Match:
    """A document's patient: ``context`` when exactly one was found (``scheduled``: a worklist item),
    else None and ``reason`` says why it waits for a person."""

    context: StudyContext | None = None
    scheduled: bool = False
    reason: str = ""
    found_in: str = ""  # "worklist" or "PACS"


def keys_from_name(config: "Config", name: str) -> Keys | None:
    """The keys ``name_pattern`` finds in a file name (a print job's title), or None."""
    return _keys(config.inbox.name_pattern, name, "name")


def keys_from_text(config: "Config", pdf: bytes) -> Keys | None:
    """The keys ``text_pattern`` finds in a PDF's text (its first pages), or None."""
    if not config.inbox.text_pattern:
        return None
    return _keys(config.inbox.text_pattern, pdf_text(pdf), "text")


def _keys(pattern: str, text: str, where: str) -> Keys | None:
    if not pattern or not text:
        return None
    found = re.search(pattern, text)
    if found is None:
        return None
    groups = {k: (v or "").strip() for k, v in found.groupdict().items()}
    keys = Keys(groups.get("patient_id", ""), groups.get("accession", ""), where)
    return keys if keys.patient_id or keys.accession else None


def pdf_text(pdf: bytes) -> str:
    """The text of a PDF's first ``TEXT_PAGES`` pages ('' when it has none or cannot be read)."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(pdf))
        if reader.is_encrypted and not reader.decrypt(""):
            return ""
        text = "\n".join(page.extract_text() or "" for page in reader.pages[:TEXT_PAGES])
    except Exception:  # noqa: BLE001 - pypdf raises many kinds on odd input; no text is no match
        log.debug("pdf text extraction failed", exc_info=True)
        return ""
    return text[:TEXT_CHARS]


def match(config: "Config", keys: Keys, cancel: threading.Event | None = None) -> Match:
    """The one worklist item or PACS patient/study ``keys`` name, or why there is none."""
    if config.worklist is None and config.query is None:
        return Match(reason="no [worklist] or [query] server is configured to look the patient up")
    what = keys.describe()
    if config.worklist is not None:
        try:
            items = _worklist(config, keys, cancel)
        except KioskError as error:
            return Match(reason=f"the worklist did not answer: {error.message}")
        if len(items) == 1:
            return Match(StudyContext.from_worklist(items[0], config.worklist.ae_title), True, found_in="worklist")
        if items:
            return Match(reason=f"{_count(items)} worklist items match {what}")
    if config.query is not None:
        try:
            return _pacs(config, keys, what, cancel)
        except KioskError as error:
            return Match(reason=f"the PACS did not answer: {error.message}")
    return Match(reason=f"no worklist item matches {what}")


def _worklist(config: "Config", keys: Keys, cancel: threading.Event | None) -> list[Any]:
    from kiosk.net.worklist import WorklistQuery, find_worklist

    # An accession number names one order whatever its day; a patient ID only today's (older
    # orders of the same patient would make every document ambiguous).
    query = WorklistQuery(patient_id=keys.patient_id, accession=keys.accession,
                          date="" if keys.accession else "today")
    return list(find_worklist(config.worklist, config.local, query, cancel=cancel, limit=LIMIT))


def _pacs(config: "Config", keys: Keys, what: str, cancel: threading.Event | None) -> Match:
    from kiosk.net.query import StudyQuery, find_studies

    studies = list(find_studies(config.query, config.local,
                                StudyQuery(patient_id=keys.patient_id, accession=keys.accession),
                                cancel=cancel, limit=LIMIT))
    source = config.query.ae_title
    where = "worklist item or PACS" if config.worklist is not None else "PACS"
    if not studies:
        kind = "study" if keys.accession else "patient"
        return Match(reason=f"no {where} {kind} with {what}")
    if keys.accession:
        if len(studies) > 1:
            return Match(reason=f"{_count(studies)} PACS studies match {what}")
        return Match(StudyContext.from_pacs_study(studies[0], source), found_in="PACS")
    patients = {(str(s.get("PatientID", "")), str(s.get("IssuerOfPatientID", "")), str(s.get("PatientName", "")))
                for s in studies}
    if len(patients) > 1:
        return Match(reason=f"{len(patients)} different PACS patients have {what}")
    study = StudyContext.from_pacs_study(studies[0], source)
    # The patient, in a new study of its own: none of the found study's order or study data.
    patient = StudyContext(**{k: getattr(study, k) for k in _PATIENT_KEYS})
    return Match(replace(patient, origin=PACS, source_ae=source), found_in="PACS")


def _count(items: list[Any]) -> str:
    return f"{len(items)}+" if len(items) >= LIMIT else str(len(items))
