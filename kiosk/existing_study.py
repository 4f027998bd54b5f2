"""Adding to a study that may already be on the PACS: its study-level attributes and the next free Series Number.

A session joins a study by its Study Instance UID: a study found on the PACS, ``--study-uid``, or a
worklist item (whose study may already have series from an earlier session). With a ``[query]``
node the study's series are looked up and the session takes the number after the highest one
seen, so a second session never collides with the series already there. A typed ``--study-uid``
also takes the study's date, time, ID, accession number and description from the PACS (objects
with other values would conflict with the study there), after checking that the study belongs to
the same patient; without a query node, or when the study is not there, it is refused.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from kiosk.audit import events, trail
from kiosk.errors import KioskError, UsageError
from kiosk.study import MANUAL, PACS, StudyContext

log = logging.getLogger(__name__)

# Study-level attributes a joined study keeps as the PACS has them.
_STUDY_LEVEL = (("study_date", "StudyDate"), ("study_time", "StudyTime"), ("study_id", "StudyID"),
                ("accession", "AccessionNumber"), ("study_description", "StudyDescription"),
                ("referring_physician", "ReferringPhysicianName"))


class StudyJoinError(KioskError):
    """The study to add to cannot be checked or does not fit the patient."""


def join_study(study: StudyContext, config: Any) -> tuple[StudyContext, int]:
    """The context to build with (a typed study's PACS values filled in) and the first free Series Number."""
    if not study.study_uid:
        return study, 1
    typed = study.origin == MANUAL
    if config.query is None:
        if typed:
            raise UsageError(f"adding to study {study.study_uid} needs the PACS query node to read the study's "
                             "date, ID and series numbers",
                             "configure [query] (docs/configuration.md), or leave out --study-uid to start a new study")
        if study.origin == PACS:
            raise UsageError("adding to a PACS study needs the [query] node that found it",
                             "configure [query] (docs/configuration.md)")
        return study, 1  # a worklist order's study: no way to see earlier series
    try:
        if typed:
            study = _with_pacs_study(study, config)
        numbers = series_numbers(config, study.study_uid)
    except KioskError as error:
        if study.origin == "worklist":
            log.warning("the series of the ordered study could not be read (%s); its images start at series 1",
                        error.message)
            return study, 1
        raise StudyJoinError(f"the study {study.study_uid} cannot be read from the PACS: {error.message}",
                             error.hint or "check the [query] node ('kiosk echo query'), then try again") from None
    trail.record(events.instances_accessed(trail.application(), [events.Study.of(study)], operator=trail.operator()))
    return study, max(numbers, default=0) + 1


def series_numbers(config: Any, study_uid: str) -> set[int]:
    """The Series Numbers the study's series have on the PACS (a series-level C-FIND)."""
    from kiosk.net.query import StudyQuery, find_studies

    numbers = set()
    for series in find_studies(config.query, config.local, StudyQuery(level="SERIES", study_uid=study_uid)):
        try:
            numbers.add(int(str(series.get("SeriesNumber", "") or "").strip()))
        except ValueError:
            continue  # a series without a number takes none
    return numbers


def _with_pacs_study(study: StudyContext, config: Any) -> StudyContext:
    from kiosk.net.query import StudyQuery, find_studies

    found = list(find_studies(config.query, config.local, StudyQuery(study_uid=study.study_uid), limit=2))
    if not found:
        raise StudyJoinError(f"the study {study.study_uid} is not on the PACS ({config.query})",
                             "check the Study Instance UID, or leave out --study-uid to start a new study")
    pacs = StudyContext.from_pacs_study(found[0], source_ae=config.query.ae_title)
    other_id = study.patient_id != pacs.patient_id
    other_issuer = bool(pacs.issuer) and study.issuer != pacs.issuer
    if study.patient_id and pacs.patient_id and (other_id or other_issuer):
        raise StudyJoinError(f"the study {study.study_uid} on the PACS belongs to patient ID {pacs.patient_id}, "
                             f"not {study.patient_id}: nothing was added to it",
                             "check the patient and the study; images never go into another patient's study")
    values = {name: getattr(pacs, name) for name, _ in _STUDY_LEVEL if getattr(pacs, name)}
    return dataclasses.replace(study, **values)
