"""PDI media (IHE RAD PDI, Portable Media Creator; DICOM File-set Creator and Updater): DICOM
files written into a folder as a File-set that follows one media profile (kiosk.media.profiles).

What lands in the folder (the root of the CD image or the USB stick)::

    DICOMDIR                    the kiosk's identity in its file meta (kiosk.media.dicomdir writes it)
    PT000000/ST000000/SE000000/IM000000 ...   each object, in a syntax the profile allows
    README.TXT                  what the medium is and how to view it (ASCII)
    INDEX.HTM, IHE_PDI/         web content (a plain page, JPEG previews), unless turned off

File IDs are in pydicom's layout (PS3.10 8.2 and ISO 9660 level 1 alike: upper-case letters and
digits, 8 characters, 4 levels); an update keeps every record and File ID of the DICOMDIR it finds
(the kiosk's, pydicom's, DCMTK's ...), so no file is moved.
Objects already in an allowed syntax are copied as they are (only their file meta is rewritten,
with the kiosk's identity: the bulk is copied by the kernel, nothing is parsed); the others are
decoded and re-encoded (``kiosk.net.store.transcode_file``); those no allowed syntax can hold
(video) are refused, each with its reason, never written non-conformant.

The writing order keeps the medium consistent if the export stops half-way (a stick pulled, the
power cut): each object is written at its File ID, the medium is flushed (``syncfs``), then the
DICOMDIR is written under a temporary name and renamed over the old one. Until the rename the old
DICOMDIR holds; objects it does not list are ignored by every reader (and their names are not
reused by the next export). A listed object is always whole.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from kiosk import IMPLEMENTATION_CLASS_UID, __version__
from kiosk import transfer_syntaxes as tsx
from kiosk.audit.transfers import exported
from kiosk.errors import KioskError
from kiosk.media.iso import burn, make_iso
from kiosk.media.profiles import EXPLICIT_LE, VIDEO, Profile
from kiosk.part10 import dataset_offset, file_meta_bytes, read_meta
from kiosk.pagecache import start_writeback

__all__ = ["ExportError", "ExportResult", "write_file_set", "make_iso", "burn", "file_set_id"]

log = logging.getLogger(__name__)

README = "README.TXT"
# Syntaxes whose pixels were never lossy (PS3.5 8.2); any other compressed syntax is lossy.
LOSSLESS_COMPRESSED = frozenset({
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
})
_FILE_SET_ID = re.compile(r"[^A-Z0-9_ ]")


class ExportError(KioskError):
    """The folder cannot take the File-set (missing, unreadable DICOMDIR, full, read-only);
    ``errno`` is the system's error number when the medium failed."""

    def __init__(self, message: str, hint: str = "", errno: int | None = None) -> None:
        super().__init__(message, hint)
        self.errno = errno


@dataclass
class ExportResult:
    """``written``: the source files now in the File-set (also those it already held);
    ``failed``: (source file, reason) for each one refused or not written."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    folder: Path | None = None


@dataclass
class _Planned:
    source: Path
    header: Any  # the data set without its pixel data: what the directory records are made from
    target: str  # the transfer syntax written
    syntax: str  # the source's transfer syntax
    offset: int | None  # where the source's data set starts, if its file meta is well-formed
    path: Path | None = None  # where the object is written: its File ID


class _Refused(Exception):
    """One object cannot be written; ``str()`` is the reason (no patient data)."""


def write_file_set(folder: Path, files: Sequence[Path], profile: Profile, *, web_content: bool = True,
                   progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None,
                   label: str = "") -> ExportResult:
    """Write ``files`` (DICOM Part 10) into the File-set in ``folder`` following ``profile``.

    A DICOMDIR already in ``folder`` is updated (its records and the files they list are kept as they
    are); else a new File-set is made, its File-set ID from ``label`` or the first patient's ID.
    ``progress(done, total)`` after each file; ``cancel`` stops before the next file (what was written
    stays, with a DICOMDIR that lists it). Raises ``ExportError`` when the folder itself is unusable.
    """
    from pydicom.errors import InvalidDicomError

    from kiosk.media.dicomdir import DicomDir

    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"the export folder {folder} is not there", "insert the USB stick or medium, or create the folder")
    try:
        dicomdir = DicomDir(folder)
    except (InvalidDicomError, ValueError, KeyError, AttributeError, TypeError, EOFError, OSError) as exc:
        raise ExportError(f"the DICOMDIR in {folder} cannot be read ({type(exc).__name__}: {exc})",
                          "move the folder's content away or choose an empty folder") from None
    result = ExportResult(folder=folder)
    headers: dict[Path, Any] = {}  # source -> its header, for the audit (each file is read once)
    added: dict[str, Any] = {}  # SOP Instance UID -> header of the objects this export writes
    try:
        for index, source in enumerate(files):
            if cancel is not None and cancel.is_set():
                result.failed += [(Path(f), "cancelled") for f in files[index:]]
                break
            source = Path(source)
            try:
                plan = _plan(source, profile)
                uid = str(plan.header.SOPInstanceUID)
                if uid not in dicomdir:
                    _add(dicomdir, plan)
                    added[uid] = plan.header
                headers[source] = plan.header
                result.written.append(source)  # written now, or already there (kept as it is)
            except _Refused as exc:
                result.failed.append((source, str(exc)))
            except OSError as exc:
                if exc.errno in _MEDIUM_ERRORS:
                    raise
                result.failed.append((source, f"cannot be read: {exc.strerror or exc}"))
            if progress is not None:
                progress(index + 1, len(files))
        if added:
            if dicomdir.new:
                dicomdir.file_set_id = file_set_id(label or str(next(iter(added.values())).get("PatientID", "")))
            _flush(folder)  # the objects are on the medium before a DICOMDIR lists them
            dicomdir.write()
            instances = dicomdir.instances()
            write_readme(folder, instances, profile)
            if web_content:
                from kiosk.media.web import write_web_content

                write_web_content(folder, instances, added)
    except OSError as exc:
        raise ExportError(f"cannot write the File-set to {folder}: {exc.strerror or exc}",
                          "check free space and that the medium is writable", errno=exc.errno) from None
    if added:
        _flush(folder)
    log.info("exported %d object(s) to %s (%s), %d refused", len(result.written), folder, profile.name,
             len(result.failed))
    exported(folder, result.written, headers=headers)
    return result


def _add(dicomdir: Any, plan: _Planned) -> None:
    """The object's records in ``dicomdir`` and the object at its File ID; ``_Refused`` (nothing added) if
    it cannot have records or be written in an allowed syntax."""
    plan.header.file_meta.TransferSyntaxUID = plan.target  # what its leaf record names
    try:
        instance = dicomdir.add(plan.header)
    except (ValueError, KeyError, AttributeError) as exc:
        raise _Refused(f"cannot be put in a DICOMDIR: {exc}") from None
    plan.path = instance.path
    try:
        plan.path.parent.mkdir(parents=True, exist_ok=True)
        _write_object(plan)
    except BaseException:
        dicomdir.discard(instance)
        plan.path.unlink(missing_ok=True)
        raise
    # a transcoding may have fallen back to another syntax: the written file's is the record's
    dicomdir.written(instance, plan.target)


_MEDIUM_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT}  # the medium's fault, not the file's


def _flush(folder: Path) -> None:
    """Everything written to the medium on it before the export counts as done (the outbox then deletes
    its copies; an operator pulls the stick): Linux ``syncfs`` of the folder's file system, else ``sync``."""
    import ctypes

    handle = os.open(folder, os.O_RDONLY)
    try:
        syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
        if syncfs is None or syncfs(handle) != 0:
            os.sync()
    finally:
        os.close(handle)


def _plan(source: Path, profile: Profile) -> _Planned:
    """The object's header and the syntax it is written in; ``_Refused`` if none of the profile's."""
    from pydicom.errors import InvalidDicomError

    try:
        header, offset = _read_header(source)
    except (InvalidDicomError, ValueError, KeyError, EOFError) as exc:
        raise _Refused(f"not a DICOM file ({type(exc).__name__})") from None
    if "SOPInstanceUID" not in header or "TransferSyntaxUID" not in header.get("file_meta", {}):
        raise _Refused("not a DICOM Part 10 file (no SOP Instance UID or transfer syntax)")
    _complete_record_values(header)
    syntax = str(header.file_meta.TransferSyntaxUID)
    if syntax in profile.allowed:
        return _Planned(source, header, syntax, syntax, offset)
    if syntax in VIDEO:
        raise _Refused(f"it is video ({_title(syntax)}), which {profile.name} does not allow "
                       f"({', '.join(_title(uid) for uid in profile.allowed)} only); no media profile the kiosk "
                       "writes holds video: send it to a PACS instead")
    never_lossy = (syntax in tsx.UNCOMPRESSED or syntax in LOSSLESS_COMPRESSED or syntax == tsx.DEFLATED.uid) \
        and header.get("LossyImageCompression", "00") != "01"
    has_pixels = "Rows" in header
    target = profile.lossless if has_pixels and never_lossy else EXPLICIT_LE
    return _Planned(source, header, target, syntax, offset)


def _read_header(source: Path) -> tuple[Any, int | None]:
    """The object's data set up to its pixel data (its file meta: SOP class, instance, syntax), and where
    the data set starts in the file. A well-formed file meta is parsed by ``kiosk.part10`` (pydicom's
    parsing of it costs as much as the rest of the header); anything unusual is pydicom's to read."""
    from pydicom import dcmread
    from pydicom.dataset import FileMetaDataset
    from pydicom.filereader import read_dataset
    from pydicom.uid import UID

    with open(source, "rb") as handle:
        offset = dataset_offset(handle)
        if offset is not None:
            meta = read_meta(source)
            syntax = UID(meta.transfer_syntax)
            if syntax.is_transfer_syntax and syntax.is_little_endian and not syntax.is_deflated:  # stored as it is
                handle.seek(offset)
                header = read_dataset(handle, syntax.is_implicit_VR, True, stop_when=_at_pixels)
                header.file_meta = FileMetaDataset()
                header.file_meta.MediaStorageSOPClassUID = meta.sop_class_uid
                header.file_meta.MediaStorageSOPInstanceUID = meta.sop_instance_uid
                header.file_meta.TransferSyntaxUID = meta.transfer_syntax
                return header, offset
    return dcmread(source, stop_before_pixels=True), None


def _at_pixels(tag: Any, vr: Any, length: int) -> bool:
    return tag in _PIXELS


_PIXELS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # (Float, Double) Pixel Data: the header ends there


def _title(uid: str) -> str:
    from pydicom.uid import UID

    row = tsx.BY_UID.get(uid)
    return row.title if row is not None else (UID(uid).name or uid)


def _write_object(plan: _Planned) -> None:
    """Write the object to ``plan.path``: copied as it is, or transcoded to ``plan.target``."""
    if plan.target == plan.syntax and plan.offset is not None:
        with open(plan.source, "rb") as src, open(plan.path, "wb") as out:
            # the kiosk writes the File-set's copy: its identity in the file meta, not the sender's
            out.write(file_meta_bytes(str(plan.header.SOPClassUID), str(plan.header.SOPInstanceUID), plan.target))
            out.flush()
            _copy_rest(src.fileno(), out.fileno(), plan.offset)
            start_writeback(out.fileno())
        return
    _transcode(plan)
    with open(plan.path, "rb") as out:
        start_writeback(out.fileno())


def _copy_rest(src: int, out: int, offset: int) -> None:
    """The source from ``offset`` to its end appended to ``out``, by the kernel (no copy through Python)."""
    size = os.fstat(src).st_size
    position = offset
    try:
        while position < size:
            sent = os.sendfile(out, src, position, min(size - position, 1 << 30))
            if sent == 0:
                break
            position += sent
    except OSError:
        if position != offset:
            raise
        os.lseek(src, offset, os.SEEK_SET)
        while chunk := os.read(src, 1 << 20):
            os.write(out, chunk)


def _transcode(plan: _Planned) -> None:
    from pydicom.uid import UID

    from kiosk.net.store import transcode_file
    from kiosk.part10 import set_file_meta

    source = plan.syntax
    try:
        try:
            ds = transcode_file(plan.source, source, plan.target, "media profile")
        except (ValueError, NotImplementedError, RuntimeError) as exc:
            if plan.target == EXPLICIT_LE:
                raise
            log.info("%s: %s not possible (%s), written uncompressed", plan.source.name, _title(plan.target), exc)
            plan.target = EXPLICIT_LE
            ds = transcode_file(plan.source, source, plan.target, "media profile")
    except (ValueError, NotImplementedError, RuntimeError, AttributeError, KeyError) as exc:
        raise _Refused(f"cannot be converted from {_title(source)} to {_title(plan.target)} ({exc})") from None
    if UID(source).is_compressed and source not in LOSSLESS_COMPRESSED and "PixelData" in ds:
        ds.LossyImageCompression = "01"  # decoded from a lossy syntax: it stays lossy (PS3.3 C.7.6.1.1.5)
    set_file_meta(ds)
    ds.save_as(plan.path, enforce_file_format=True)


def _complete_record_values(header: Any) -> None:
    """Fill in the Type 1 record values an object may lack (PS3.3 F.5: Study ID, Series and Instance
    Number) in the header the records are made from, not in the object; ``_Refused`` if it lacks more."""
    from pydicom.datadict import dictionary_description, tag_for_keyword

    for keyword in ("PatientID", "StudyDate", "StudyTime", "Modality", "StudyInstanceUID", "SeriesInstanceUID"):
        if not header.get(keyword):
            name = dictionary_description(tag_for_keyword(keyword))
            raise _Refused(f"it has no {name}, which its DICOMDIR record needs (PS3.3 F.5)")
    if not header.get("StudyID"):
        header.StudyID = str(header.StudyInstanceUID)[-16:]
    if header.get("SeriesNumber") in (None, ""):
        header.SeriesNumber = 0
    if header.get("InstanceNumber") in (None, ""):
        header.InstanceNumber = 0
    if "ConceptNameCodeSequence" in header and "ContentSequence" in header:
        # An SR or key object document: its record holds only the root's concept modifiers (PS3.3 F.5.21),
        # pydicom would copy the whole content tree into the DICOMDIR.
        modifiers = [item for item in header.ContentSequence if item.get("RelationshipType") == "HAS CONCEPT MOD"]
        if modifiers:
            header.ContentSequence = modifiers
        else:
            del header.ContentSequence
    if header.get("VerificationFlag") == "VERIFIED" and "VerificationDateTime" not in header:
        times = [str(o.VerificationDateTime) for o in header.get("VerifyingObserverSequence", [])
                 if o.get("VerificationDateTime")]
        if times:
            header.VerificationDateTime = max(times)  # the record's Type 1C: the latest verification


def file_set_id(label: str) -> str:
    """``label`` as a File-set ID (PS3.10 8.5: up to 16 of A-Z, 0-9, _ and space); "KIOSK" if nothing is left."""
    return _FILE_SET_ID.sub("_", label.upper().strip())[:16].strip() or "KIOSK"


def write_readme(folder: Path, instances: Sequence[Any], profile: Profile) -> None:
    """README.TXT at the root (IHE RAD TF-3 4.47.4.1.2.2): who made the medium and how to view it (ASCII)."""
    studies = {str(i.StudyInstanceUID) for i in instances if "StudyInstanceUID" in i}
    patients = {str(i.PatientID) for i in instances if "PatientID" in i}
    lines = [
        "DICOM MEDIUM (IHE Portable Data for Imaging)",
        "",
        f"Created with: kiosk {__version__}, a capture-to-DICOM station (open source)",
        f"Implementation Class UID: {IMPLEMENTATION_CLASS_UID}",
        f"Last written: {datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"Media profile: {', '.join(profile.identifiers)} ({profile.annex}), {profile.medium}",
        f"Contents: {len(patients)} patient(s), {len(studies)} study(ies), {len(instances)} DICOM object(s)",
        "",
        "How to view:",
        "- The DICOMDIR file at the root lists every DICOM object on this medium. Open the medium",
        "  (or the DICOMDIR file) with any DICOM viewer.",
        "- INDEX.HTM, if present, opens in a web browser: a list of the studies with small previews.",
        "  The previews are for orientation only, not for diagnosis.",
        "- No viewer program is on this medium.",
        "",
        "This medium holds patient data. Keep it safe; questions about its content go to the",
        "institution that gave it to you.",
        "",
    ]
    (folder / README).write_text("\r\n".join(lines), encoding="ascii", errors="replace")
