"""What a medium holds, as the reader found it: patients -> studies -> series -> instances, and the
files that could not be used (each with the reason). Plain data: the UI, the CLI and the importer
read it; nothing here touches the medium."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator


@dataclass(frozen=True)
class MediaInstance:
    """One DICOM file on the medium (its header only was read)."""

    path: Path  # absolute
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    instance_number: int | None
    size: int  # bytes


@dataclass
class MediaSeries:
    uid: str
    modality: str = ""
    number: int | None = None
    description: str = ""
    instances: list[MediaInstance] = field(default_factory=list)


@dataclass
class MediaStudy:
    uid: str
    date: str = ""  # YYYYMMDD
    time: str = ""
    description: str = ""
    accession: str = ""
    study_id: str = ""
    referring_physician: str = ""
    series: list[MediaSeries] = field(default_factory=list)

    @property
    def modalities(self) -> list[str]:
        """The series' modalities, each once, in order of appearance."""
        return list(dict.fromkeys(s.modality for s in self.series if s.modality))

    @property
    def instances(self) -> list[MediaInstance]:
        return [i for s in self.series for i in s.instances]

    @property
    def size(self) -> int:
        return sum(i.size for i in self.instances)


@dataclass
class MediaPatient:
    """The patient as the medium names them (a foreign identity: never the local one)."""

    patient_id: str = ""
    issuer: str = ""
    name: str = ""  # DICOM PN
    birth_date: str = ""
    sex: str = ""
    studies: list[MediaStudy] = field(default_factory=list)


@dataclass(frozen=True)
class MediaProblem:
    """A file the medium references or holds that cannot be imported, and why (no patient data)."""

    path: Path  # absolute
    problem: str
    hint: str = ""  # what the operator can do about it


@dataclass
class Medium:
    """A read medium: its root, its label and what it holds."""

    root: Path
    label: str = ""  # the File-set ID, else the folder's name
    has_dicomdir: bool = False
    patients: list[MediaPatient] = field(default_factory=list)
    problems: list[MediaProblem] = field(default_factory=list)
    other_files: int = 0  # files that are not DICOM and not meant to be (README, a viewer), ignored

    def studies(self) -> Iterator[tuple[MediaPatient, MediaStudy]]:
        for patient in self.patients:
            for study in patient.studies:
                yield patient, study

    def study(self, uid: str) -> tuple[MediaPatient, MediaStudy] | None:
        return next(((p, s) for p, s in self.studies() if s.uid == uid), None)

    def chosen(self, study_uids: Iterable[str] = (), series_uids: Iterable[str] = ()
               ) -> list[tuple[MediaPatient, MediaStudy, MediaSeries]]:
        """The series chosen by study and/or series UID (nothing named: every series)."""
        studies, series = set(study_uids), set(series_uids)
        return [(p, st, se) for p, st in self.studies() for se in st.series
                if (not studies and not series) or st.uid in studies or se.uid in series]

    def relative(self, path: Path) -> str:
        """``path`` as named on the medium (relative to its root, with forward slashes)."""
        try:
            return path.relative_to(self.root).as_posix() or "."
        except ValueError:
            return str(path)

    def to_json(self) -> dict[str, Any]:
        """The form ``kiosk media list --json`` prints: counts and sizes, not the instances themselves."""
        return {
            "root": str(self.root),
            "label": self.label,
            "has_dicomdir": self.has_dicomdir,
            "patients": [{
                "patient_id": p.patient_id, "issuer": p.issuer, "name": p.name, "birth_date": p.birth_date,
                "sex": p.sex,
                "studies": [{
                    "uid": st.uid, "date": st.date, "time": st.time, "description": st.description,
                    "accession": st.accession, "study_id": st.study_id,
                    "referring_physician": st.referring_physician, "modalities": st.modalities,
                    "instances": len(st.instances), "size": st.size,
                    "series": [{"uid": se.uid, "modality": se.modality, "number": se.number,
                                "description": se.description, "instances": len(se.instances),
                                "size": sum(i.size for i in se.instances),
                                "transfer_syntaxes": sorted({i.transfer_syntax for i in se.instances})}
                               for se in st.series],
                } for st in p.studies],
            } for p in self.patients],
            "problems": [{"path": self.relative(q.path), "problem": q.problem, "hint": q.hint} for q in self.problems],
            "other_files": self.other_files,
        }
