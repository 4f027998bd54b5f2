"""A patient's CD or USB stick -> ``Medium`` (the File-set Reader); which mounted media hold DICOM.

With a DICOMDIR, the files it references are read (pydicom's ``FileSet``); files it does not
reference are ignored, as a File-set Reader does. Without one, or when it cannot be parsed, every
folder is searched. Only headers are read (up to the pixel data, values of interest only), so 10,000
files cost little memory. Each file's own header decides where it goes (patient, study, series): it
is what will be imported; the DICOMDIR's records only fill in what a header lacks.

Damaged, missing and non-DICOM files become ``Medium.problems`` (each with a hint); ``MediaError`` is
raised only when the root itself cannot be used (not there, unreadable, removed while being read).
Names on ISO 9660 discs are matched whatever their case: Linux shows a plain ISO 9660 disc's names in
lower case (``dicomdir``, ``dicom/pat1/img0001``) while its DICOMDIR names them in upper case.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from kiosk.errors import KioskError
from kiosk.media.model import MediaInstance, MediaPatient, MediaProblem, MediaSeries, MediaStudy, Medium
from kiosk.transfer_syntaxes import EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE

log = logging.getLogger(__name__)

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the DICOMDIR's SOP class: never an instance to import
DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima"}
# Folders operating systems and viewers put on media; never searched.
SYSTEM_FOLDERS = {"system volume information", "$recycle.bin", "lost+found", "__macosx", ".trashes",
                  ".spotlight-v100", ".fseventsd"}
# Errors that mean the medium, not one file, may have gone (a stick pulled out, a disc ejected).
GONE = {errno.ENOENT, errno.EIO, errno.ENODEV, errno.ENXIO, errno.ESTALE, errno.ENOTCONN, errno.ENOTDIR}
PROGRESS_EVERY = 20  # files between progress callbacks
HOLDS_DICOM_LOOKS = 200  # files ``holds_dicom`` opens at most before saying no
TAGS = ["SOPClassUID", "SOPInstanceUID", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
        "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber", "StudyID",
        "ReferringPhysicianName", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
        "InstanceNumber"]
ASCII_VRS = {"UI", "DA", "TM", "IS", "CS"}  # no character set applies (PS3.5 6.1.2.3)
PIXEL_DATA = (0x7FE0, 0x0010)
UNDEFINED = 0xFFFFFFFF

ASK_AGAIN = "ask the sender for a new copy of the medium; the other files can still be imported"
NOT_IMPORTED = "this file is not imported"
NOT_DICOM = "not DICOM"  # what ``_read_header`` returns for a file that is not DICOM at all


class MediaError(KioskError):
    """The medium itself cannot be read: not there, not a folder, unreadable, or removed while being read."""


class ReadCancelled(KioskError):
    """The read was cancelled; what was read so far is not a whole medium and is not returned."""

    def __init__(self) -> None:
        super().__init__("reading the medium was cancelled", "read it again to import from it")


@dataclass
class _Header:
    """What one file's header says, before grouping."""

    path: Path
    size: int
    values: dict[str, Any]
    transfer_syntax: str


class _Reading:
    """One read of one medium: files read, problems found, cancel and progress."""

    def __init__(self, root: Path, cancel: threading.Event | None, progress: Callable[[int], None] | None) -> None:
        self.root = root
        self.cancel = cancel
        self.progress = progress
        self.count = 0
        self.problems: list[MediaProblem] = []
        self.other_files = 0

    def problem(self, path: Path, problem: str, hint: str = ASK_AGAIN) -> None:
        self.problems.append(MediaProblem(path, problem, hint))

    def tick(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise ReadCancelled()
        self.count += 1
        if self.progress is not None and self.count % PROGRESS_EVERY == 0:
            self.progress(self.count)

    def io_error(self, path: Path, exc: OSError) -> None:
        """One file could not be read: the medium has gone (``MediaError``), or that file is a problem."""
        if exc.errno in GONE:
            _check_root(self.root, during=True)
        self.problem(path, f"cannot be read ({exc.strerror or exc})",
                     "the disc may be scratched or dirty: clean it or try another drive; " + ASK_AGAIN)


def read_medium(root: Path, cancel: threading.Event | None = None,
                progress: Callable[[int], None] | None = None) -> Medium:
    """Read what ``root`` holds: patients, studies, series, instances (headers only), and the problems.

    ``progress(count)`` is called every few files with the number of files read so far, and at the end.
    ``cancel`` set: ``ReadCancelled`` (a partial read is never returned, so it cannot be imported).
    ``MediaError`` when the root cannot be used or disappears while being read.
    """
    root = Path(os.path.abspath(root))
    _check_root(root)
    reading = _Reading(root, cancel, progress)
    medium = Medium(root, label=root.name)
    headers: list[_Header] | None = None
    dicomdir = _find_dicomdir(root)
    if dicomdir is not None:
        try:
            headers, medium.label = _read_file_set(reading, dicomdir)
            medium.has_dicomdir = True
        except (MediaError, ReadCancelled):
            raise
        except Exception as exc:  # noqa: BLE001 - any way a DICOMDIR can be broken: fall back to the scan
            del reading.problems[:]
            reading.problem(dicomdir, f"the DICOMDIR cannot be read ({_reason(exc)}); every folder was searched "
                            "for DICOM files instead",
                            "check that the studies listed are complete before importing them")
    if headers is None:
        headers = _scan(reading)
    if progress is not None:
        progress(reading.count)
    medium.patients = _group(reading, _without_duplicates(reading, headers))
    medium.problems = reading.problems
    medium.other_files = reading.other_files
    log.info("medium read: %d file(s), %d instance(s), %d problem(s), %d other file(s), DICOMDIR: %s",
             reading.count, sum(len(st.instances) for _, st in medium.studies()), len(medium.problems),
             medium.other_files, medium.has_dicomdir)
    return medium


def holds_dicom(root: Path) -> bool:
    """Whether ``root`` looks like DICOM media: a DICOMDIR, or a Part 10 file among its first files. Never raises."""
    try:
        if _find_dicomdir(Path(root)) is not None:
            return True
        looked = 0
        for folder, names in _walk(Path(root), on_error=lambda _path, _exc: None):
            for name in names:
                if looked >= HOLDS_DICOM_LOOKS:
                    return False
                looked += 1
                try:
                    with open(folder / name, "rb") as handle:
                        if handle.read(132)[128:] == b"DICM":
                            return True
                except OSError:
                    continue
    except OSError:
        return False
    return False


def inserted_media(mount_points: Sequence[str]) -> list[Path]:
    """The mounted media (``mounted_media``) that hold DICOM. Never raises."""
    return [root for root in mounted_media(mount_points) if holds_dicom(root)]


def mounted_media(mount_points: Sequence[str]) -> list[Path]:
    """The media mounted under the configured mount points (``/mnt/usb``; ``/media/USER/LABEL`` and
    ``/run/media/USER/LABEL`` of desktop automounters). A candidate is a mount point, or a folder holding files
    or nothing; a folder holding folders only (an automounter's user folder) is looked into, one level. Never raises:
    unreadable or absent folders are skipped."""
    found: list[Path] = []
    for mount_point in mount_points:
        base = Path(mount_point)
        if os.path.ismount(base):
            found.append(base)
            continue
        for child in _folders(base):
            if not os.path.ismount(child) and _folders_only(child):
                found.extend(_folders(child))
            else:
                found.append(child)
    return found


def _folders_only(path: Path) -> bool:
    """Whether ``path`` holds folders and nothing else (an empty folder may be an empty stick)."""
    try:
        with os.scandir(path) as entries:
            kinds = [e.is_dir() for e in entries if not e.name.startswith(".")]
    except OSError:
        return False
    return bool(kinds) and all(kinds)


def _folders(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir() and not _hidden(e.name))
    except OSError:
        return []


def _check_root(root: Path, during: bool = False) -> None:
    """``MediaError`` unless ``root`` is a readable folder (``during`` a read: it was, and has gone)."""
    try:
        os.listdir(root)
    except OSError as exc:
        if during:
            raise MediaError(f"the medium at {root} went away while it was being read ({exc.strerror or exc})",
                             "insert it again and read it again; nothing was imported from it") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise MediaError(f"{root} is not a folder", "give the folder a CD or USB stick is mounted on") from None
        raise MediaError(f"cannot read {root} ({exc.strerror or exc})",
                         "check that the CD or USB stick is inserted and mounted") from None


def _find_dicomdir(root: Path) -> Path | None:
    """The root's DICOMDIR, whatever the case of its name (``dicomdir`` on a plain ISO 9660 disc)."""
    exact = root / "DICOMDIR"
    if exact.is_file():
        return exact
    try:
        with os.scandir(root) as entries:
            return next((Path(e.path) for e in entries if _normal(e.name) == "DICOMDIR" and e.is_file()), None)
    except OSError:
        return None


def _normal(name: str) -> str:
    """An ISO 9660 name as a DICOMDIR gives it: upper case, without a version (``;1``) or a trailing dot."""
    return re.sub(r"\.?(;\d+)?$", "", name).upper()


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_FOLDERS


# ---- with a DICOMDIR ----------------------------------------------------------------------------------------

def _read_file_set(reading: _Reading, dicomdir: Path) -> tuple[list[_Header], str]:
    """The headers of the files the DICOMDIR references (missing ones are problems), and the File-set ID."""
    from pydicom import config, dcmread
    from pydicom.dataelem import DataElement
    from pydicom.fileset import FileSet

    try:
        ds = dcmread(dicomdir)
    except OSError as exc:
        if exc.errno in GONE:
            _check_root(reading.root, during=True)
        raise
    records = [r for r in ds.DirectoryRecordSequence if "ReferencedFileID" in r]
    names = _Names(reading.root)
    for record in records:
        parts = _file_id(record)
        found = names.find(parts)
        if found is None:
            reading.problem(reading.root.joinpath(*parts), "the DICOMDIR lists this file but it is not on the medium")
        elif found != parts:  # as on disk (ISO 9660 names shown in lower case), for FileSet; not valid CS values
            record["ReferencedFileID"] = DataElement(0x00041500, "CS", list(found), validation_mode=config.IGNORE)
    # FileSet warns (and logs) about each missing file: those are problems listed already.
    if not any(isinstance(f, _MissingFileWarnings) for f in logging.getLogger("pydicom").filters):
        logging.getLogger("pydicom").addFilter(_MissingFileWarnings())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        file_set = FileSet(ds)
    headers = []
    for instance in file_set:
        reading.tick()
        path = reading.root.joinpath(*_file_id(instance))  # not instance.path: FileSet resolves symbolic links
        header = _read_header(reading, path)
        if header is NOT_DICOM:
            reading.problem(path, f"is not a DICOM file; {NOT_IMPORTED}")
            continue
        if header is None:
            continue
        expected = str(instance.SOPInstanceUID)
        if header.values.get("SOPInstanceUID") != expected:
            reading.problem(path, f"holds SOP Instance UID {header.values.get('SOPInstanceUID')} where the DICOMDIR "
                            f"says {expected}; {NOT_IMPORTED}")
            continue
        for keyword in TAGS:  # what the header lacks, from the DICOMDIR's records (image, series, study, patient)
            if header.values.get(keyword) in (None, ""):
                try:
                    header.values[keyword] = _text(instance[keyword].value)
                except KeyError:
                    pass
        headers.append(header)
    return headers, str(file_set.ID or "") or reading.root.name


class _MissingFileWarnings(logging.Filter):
    """Leaves out pydicom's log lines about a DICOMDIR's missing files (the reader lists them as problems)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("The referenced SOP Instance for the directory record")


def _file_id(record) -> tuple[str, ...]:
    """A record's (or a ``FileInstance``'s) Referenced File ID, as path components."""
    value = record.ReferencedFileID
    parts = [value] if isinstance(value, str) else list(value)
    return tuple(str(p) for p in parts if str(p))


class _Names:
    """Referenced File IDs found on disk, matched case-insensitively (folder listings cached)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.listings: dict[Path, dict[str, str]] = {}

    def find(self, parts: tuple[str, ...]) -> tuple[str, ...] | None:
        if not parts or any(p in ("..", ".") for p in parts):
            return None
        if self.root.joinpath(*parts).is_file():
            return parts
        folder, found = self.root, []
        for part in parts:
            actual = self._listing(folder).get(_normal(part))
            if actual is None:
                return None
            found.append(actual)
            folder = folder / actual
        return tuple(found) if folder.is_file() else None

    def _listing(self, folder: Path) -> dict[str, str]:
        if folder not in self.listings:
            try:
                self.listings[folder] = {_normal(name): name for name in sorted(os.listdir(folder))}
            except OSError:
                self.listings[folder] = {}
        return self.listings[folder]


# ---- without one ---------------------------------------------------------------------------------------------

def _walk(root: Path, on_error: Callable[[Path, OSError], None]) -> Iterator[tuple[Path, list[str]]]:
    """Each folder under ``root`` (sorted, hidden and system folders left out) with its file names."""
    def error(exc: OSError) -> None:
        on_error(Path(exc.filename) if exc.filename else root, exc)

    for folder, dirnames, filenames in os.walk(root, onerror=error):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        yield Path(folder), sorted(f for f in filenames if not f.startswith(".") and _normal(f) != "DICOMDIR")


def _scan(reading: _Reading) -> list[_Header]:
    """Every DICOM file under the root. Non-DICOM files are counted, and listed only if they look meant as DICOM."""
    def unreadable_folder(path: Path, exc: OSError) -> None:
        if path == reading.root or exc.errno in GONE:
            _check_root(reading.root, during=True)
        if path != reading.root:
            reading.problem(path, f"this folder cannot be read ({exc.strerror or exc})",
                            "the disc may be scratched or dirty: clean it or try another drive")

    headers = []
    for folder, names in _walk(reading.root, unreadable_folder):
        strangers = []
        for name in names:
            reading.tick()
            path = folder / name
            header = _read_header(reading, path)
            if header is NOT_DICOM:
                strangers.append(path)
            elif header is not None:
                headers.append(header)
        # Named as DICOM files are, or without an extension among DICOM files: meant as DICOM, so worth a line.
        dicom_here = bool(headers) and headers[-1].path.parent == folder
        for path in strangers:
            if path.suffix.lower() in DICOM_SUFFIXES or (dicom_here and not path.suffix):
                reading.problem(path, f"is not a DICOM file; {NOT_IMPORTED}")
            else:
                reading.other_files += 1
    return headers


# ---- one file --------------------------------------------------------------------------------------------------

def _read_header(reading: _Reading, path: Path) -> _Header | str | None:
    """The file's header; ``NOT_DICOM`` for a file that is not DICOM at all (the caller decides whether that is a
    problem); None for a file that is DICOM but not an instance to import (a problem recorded unless it is a
    DICOMDIR)."""
    from pydicom import dcmread

    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(132)
            part10 = head[128:132] == b"DICM"
            # Without the Part 10 preamble a file is read only if it starts as a data set does (group 0002 or
            # 0008, either byte order), and kept only if it names its SOP class and instance.
            bare = not part10 and head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")
            if not (part10 or bare):
                return NOT_DICOM
            handle.seek(0)
            try:
                ds = dcmread(handle, force=bare, stop_before_pixels=True, specific_tags=TAGS)
                values = _values(ds)
                cut_short = _pixel_data_cut_short(handle, size, ds)
            except OSError:
                raise
            except Exception as exc:  # noqa: BLE001 - pydicom's many ways of saying "damaged"
                if not part10:
                    return NOT_DICOM
                reading.problem(path, f"is a damaged DICOM file ({_reason(exc)}); {NOT_IMPORTED}")
                return None
    except OSError as exc:
        reading.io_error(path, exc)
        return None
    meta = getattr(ds, "file_meta", None)
    sop_class = values["SOPClassUID"] or _text(meta.get("MediaStorageSOPClassUID", "") if meta else "")
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        return None
    if bare and not (values["SOPClassUID"] and values["SOPInstanceUID"]):
        return NOT_DICOM
    values["SOPClassUID"] = sop_class
    missing = [k for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID") if not values[k]]
    if not sop_class or missing:
        reading.problem(path, f"is a damaged or incomplete DICOM file (it lacks {', '.join(missing or ['SOPClassUID'])}"
                        f"); {NOT_IMPORTED}")
        return None
    if cut_short:
        reading.problem(path, f"is cut short: {cut_short}; {NOT_IMPORTED}")
        return None
    return _Header(path, size, values, _transfer_syntax(ds))


def _values(ds) -> dict[str, str]:
    """The ``TAGS`` of a header read, as text ("" when absent). ASCII-only values are taken from the raw bytes:
    converting each through pydicom costs more than reading the file."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    values = {}
    for keyword in TAGS:
        tag = tag_for_keyword(keyword)
        raw = ds.get_item(tag) if tag in ds else None
        if raw is None:
            values[keyword] = ""
        elif dictionary_VR(tag) in ASCII_VRS and isinstance(raw.value, bytes):
            values[keyword] = raw.value.decode("ascii", "replace").strip("\0 ")
        else:
            values[keyword] = _text(ds[tag].value)
    return values


def _pixel_data_cut_short(handle, size: int, ds) -> str:
    """Why the pixel data (where the header read stopped) do not fit in the file; "" if they do or cannot tell.

    Encapsulated (compressed) pixel data and deflated files are checked when imported (the outbox reads
    every file whole); this costs one 12-byte read.
    """
    position = handle.tell()
    if size - position < 8:
        return ""
    element = handle.read(12)
    implicit, little = ds.original_encoding
    order = "<" if little else ">"
    if struct.unpack_from(order + "HH", element) != PIXEL_DATA:
        return ""
    if implicit:
        length, header = struct.unpack_from(order + "I", element, 4)[0], 8
    elif len(element) < 12:
        return f"the pixel data stop at byte {size}"
    else:
        length, header = struct.unpack_from(order + "I", element, 8)[0], 12
    if length == UNDEFINED or position + header + length <= size:
        return ""
    return f"its pixel data need {length} bytes, only {size - position - header} are there"


def _transfer_syntax(ds) -> str:
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return str(meta.TransferSyntaxUID)
    implicit, little = ds.original_encoding
    return IMPLICIT_LE.uid if implicit else EXPLICIT_LE.uid if little else EXPLICIT_BE.uid


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


# ---- duplicates and grouping -----------------------------------------------------------------------------------

def _without_duplicates(reading: _Reading, headers: list[_Header]) -> list[_Header]:
    """One header per SOP Instance UID. The same content twice is kept once; different content under one UID is
    a problem for every copy and none is kept (which one is right cannot be told; importing either could put
    the wrong image in the record)."""
    by_uid: dict[str, list[_Header]] = {}
    for header in headers:
        by_uid.setdefault(header.values["SOPInstanceUID"], []).append(header)
    kept = []
    for uid, same in by_uid.items():
        same = list({h.path: h for h in same}.values())  # one file referenced twice is still one file
        if len(same) == 1 or len({_fingerprint(reading, h) for h in same}) == 1:
            kept.append(same[0])
            continue
        for header in same:
            others = ", ".join(Medium(reading.root).relative(h.path) for h in same if h is not header)
            reading.problem(header.path, f"holds SOP Instance UID {uid}, as does {others}, with different content; "
                            "neither is imported", "ask the sender which one is right; import it by hand after "
                            "checking it")
    return kept


def _fingerprint(reading: _Reading, header: _Header) -> tuple[int, str]:
    digest = hashlib.sha256()
    try:
        with open(header.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        reading.io_error(header.path, exc)
        return header.size, f"unreadable:{header.path}"
    return header.size, digest.hexdigest()


def _group(reading: _Reading, headers: list[_Header]) -> list[MediaPatient]:
    """Patients (by ID, issuer and name: one CD can hold several), studies, series; each sorted."""
    patients: dict[tuple[str, str, str], MediaPatient] = {}
    studies: dict[tuple, MediaStudy] = {}
    series: dict[tuple, MediaSeries] = {}
    for h in headers:
        v = h.values
        patient_key = (v["PatientID"], v["IssuerOfPatientID"], v["PatientName"])
        patient = patients.get(patient_key)
        if patient is None:
            patient = patients[patient_key] = MediaPatient(v["PatientID"], v["IssuerOfPatientID"], v["PatientName"],
                                                           v["PatientBirthDate"], v["PatientSex"])
        study_key = (patient_key, v["StudyInstanceUID"])
        study = studies.get(study_key)
        if study is None:
            study = studies[study_key] = MediaStudy(v["StudyInstanceUID"], v["StudyDate"], v["StudyTime"],
                                                    v["StudyDescription"], v["AccessionNumber"], v["StudyID"],
                                                    v["ReferringPhysicianName"])
            patient.studies.append(study)
        series_key = (study_key, v["SeriesInstanceUID"])
        one = series.get(series_key)
        if one is None:
            one = series[series_key] = MediaSeries(v["SeriesInstanceUID"], v["Modality"], _int(v["SeriesNumber"]),
                                                   v["SeriesDescription"])
            study.series.append(one)
        one.instances.append(MediaInstance(h.path, v["SOPClassUID"], v["SOPInstanceUID"], h.transfer_syntax,
                                           _int(v["InstanceNumber"]), h.size))
    last = float("inf")
    for patient in patients.values():
        patient.studies.sort(key=lambda s: (s.date or "99999999", s.time, s.uid))
        for study in patient.studies:
            study.series.sort(key=lambda s: (last if s.number is None else s.number, s.uid))
            for one in study.series:
                one.instances.sort(key=lambda i: (last if i.instance_number is None else i.instance_number, str(i.path)))
    return sorted(patients.values(), key=lambda p: (p.name, p.patient_id, p.issuer))


def _int(value: str) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None
