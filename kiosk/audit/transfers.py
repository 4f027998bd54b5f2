"""Audit of sending DICOM files: Begin Transferring (110102) and Instances Transferred (110104).

One message of each per call of a sender (an association, a STOW-RS batch) and
per destination, listing each study with its patient and SOP classes. The
patient and study come from the files themselves (their headers are read once,
without pixel data).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from kiosk.audit import events, trail
from kiosk.audit.codes import Outcome
from kiosk.config import NodeConfig

log = logging.getLogger(__name__)

DELIVERED = ("success", "warning")
_TAGS = ("SOPClassUID", "StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber")


class Headers:
    """The studies of DICOM files, from their headers (each read once, without pixel data; ``known``:
    path -> data set of files the caller has read already, not read again)."""

    def __init__(self, known: Mapping[Path, Any] | None = None) -> None:
        self._headers: dict[Path, tuple[str, ...]] = {path: _values(ds) for path, ds in (known or {}).items()}

    def studies(self, paths: Sequence[Path]) -> list[events.Study]:
        grouped: dict[str, dict] = {}
        for path in paths:
            sop_class, study_uid, patient_id, name, accession = self._header(path)
            if not study_uid:
                continue
            study = grouped.setdefault(study_uid, {"patient": (patient_id, name), "accession": accession, "classes": {}})
            study["classes"][sop_class] = study["classes"].get(sop_class, 0) + 1
        return [events.Study(uid, s["patient"][0], s["patient"][1], tuple(s["classes"].items()), s["accession"])
                for uid, s in grouped.items()]

    def _header(self, path: Path) -> tuple[str, ...]:
        if path not in self._headers:
            from pydicom import dcmread

            try:
                ds = dcmread(path, stop_before_pixels=True, specific_tags=list(_TAGS))
                self._headers[path] = _values(ds)
            except Exception:  # noqa: BLE001 - an unreadable file is not part of any study
                self._headers[path] = ("", "", "", "", "")
        return self._headers[path]


def _values(ds: Any) -> tuple[str, ...]:
    return tuple(str(ds.get(tag, "") or "") for tag in _TAGS)


def exported(folder: Path, written: Sequence[Path], outcome: Outcome = Outcome.SUCCESS, *,
             headers: Mapping[Path, Any] | None = None) -> None:
    """Export (110106): the instances ``written`` into the File-set in ``folder`` (a CD, a USB stick);
    ``headers``: path -> data set of those the exporter has read (the others are read here)."""
    try:
        studies = Headers(headers).studies(written)
        if studies:
            trail.record(events.export(trail.application(), str(folder), studies, trail.operator(), outcome))
    except Exception as exc:  # noqa: BLE001 - auditing must not stop the export
        log.error("audit: the export to %s could not be described (%s)", folder, type(exc).__name__)


class Transfer:
    """The audit of one attempt to send ``paths`` to ``node``: ``begin()``, then ``end(...)``."""

    def __init__(self, node: NodeConfig, paths: Sequence[Path]) -> None:
        self.node = node
        self.paths = list(paths)
        self._headers = Headers()

    def begin(self) -> None:
        try:
            studies = self._studies(self.paths)
            if studies:
                trail.record(events.begin_transferring(trail.application(), trail.peer(self.node), studies,
                                                       trail.operator()))
        except Exception as exc:  # noqa: BLE001 - auditing must not stop the transfer
            log.error("audit: the transfer to %s could not be described (%s)", self.node, type(exc).__name__)

    def end(self, outcomes: Iterable[tuple[Path, str]], problem: str = "") -> None:
        """What became of each file (``success``, ``warning``, ``failed``...); ``problem``: why the attempt failed."""
        try:
            outcomes = list(outcomes)
            delivered = [path for path, outcome in outcomes if outcome in DELIVERED]
            if len(delivered) == len(self.paths) and not problem:
                outcome = Outcome.SUCCESS
            else:
                outcome = Outcome.MINOR_FAILURE if delivered else Outcome.SERIOUS_FAILURE
            studies = self._studies(delivered) or [
                events.Study(s.study_uid, s.patient_id, s.patient_name, (), s.accession) for s in self._studies(self.paths)]
            missing = len(self.paths) - len(delivered)
            description = problem or (f"{missing} of {len(self.paths)} instance(s) not stored" if missing else "")
            trail.record(events.instances_transferred(trail.application(), trail.peer(self.node), studies, outcome,
                                                      trail.operator(), description))
        except Exception as exc:  # noqa: BLE001 - auditing must not stop the transfer
            log.error("audit: the transfer to %s could not be described (%s)", self.node, type(exc).__name__)

    def _studies(self, paths: Sequence[Path]) -> list[events.Study]:
        return self._headers.studies(paths)
