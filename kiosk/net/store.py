"""Storage SCU: send Part 10 files over one association, transcoding when the peer requires it.

Presentation contexts are built from the files: per SOP class one context with
the uncompressed transfer syntaxes, and per compressed transfer syntax a
context of its own (a peer offered both in one context picks uncompressed and
the compressed file could then not be sent as it is). Files go out unchanged
when their transfer syntax was accepted; otherwise they are decompressed (or
re-encoded) to one the peer accepted, and the log says so.

A video object (``kiosk.video.fallback``) whose SOP class or transfer syntax
the peer does not take goes as its Multi-frame True Color SC in JPEG Baseline
when ``store_files`` is given a folder to make it in (``[video] fallback``):
that context is proposed too. The association is released while the frames
are encoded (an archive may close one left idle for minutes) and opened again
to send it; the result says so (``InstanceResult.fallback``).

C-STORE status handling follows XD3's conformance statement: 0000 success;
warnings B000, B006, B007 count as success and are logged; A7xx (out of
resources) is transient: the rest of the batch is left for a later retry;
A9xx, Cxxx and any other code fail that instance with the code and its
meaning, and sending goes on with the next one; so does a file that cannot be
converted or encoded. An abort, timeout or lost connection ends the run: the
instance awaiting its answer is marked ``in_flight``, the rest are unsent.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, Sequence

from kiosk import transfer_syntaxes as tsx
from kiosk.audit.transfers import Transfer
from kiosk.checksum import FileChanged, open_checked
from kiosk.config import LocalConfig, NodeConfig
from kiosk.endian import EXPLICIT_BE, to_little_endian
from kiosk.errors import UsageError
from kiosk.net import errors, fastpath
from kiosk.net.cancel import CancelWatch
from kiosk.net.nodes import associate, release
from kiosk.part10 import FileMeta, NotPart10Error, read_meta
from kiosk.video import fallback as video

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

#: "damaged": the file no longer holds what its ``KnownFile.sha256`` says; it was not sent.
Outcome = Literal["success", "warning", "transient", "failed", "damaged"]

EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE = UNCOMPRESSED = tsx.UNCOMPRESSED
MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1-255

WARNINGS_AS_SUCCESS = {0xB000, 0xB006, 0xB007}
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the DICOMDIR's SOP class (PS3.10)



@dataclass(frozen=True)
class InstanceResult:
    """What happened to one file. ``status`` is the C-STORE status, None if it was never sent.

    ``in_flight``: it was sent, and the association failed (abort, timeout,
    lost connection) before its answer came: it may be what made the peer
    fail. The instances after it were not sent. ``fallback``: what the peer
    got instead of a video object it does not take (``kiosk.video.fallback.note``),
    "" when it got the file itself.
    """

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    status: int | None
    outcome: Outcome
    message: str = ""
    in_flight: bool = False
    fallback: str = ""


@dataclass
class StoreResult:
    """Per-instance results of one ``store_files`` call, in input order."""

    results: list[InstanceResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.outcome in ("success", "warning") for r in self.results)

    def count(self, *outcomes: Outcome) -> int:
        return sum(r.outcome in outcomes for r in self.results)


@dataclass(frozen=True)
class StoreProgress:
    """Progress for a progress bar: instances and bytes done of the totals."""

    instances_done: int
    instances_total: int
    bytes_done: int
    bytes_total: int
    current: Path | None = None


@dataclass(frozen=True)
class KnownFile:
    """What a caller already knows of a file (the outbox, from accepting it): not read again, and checked.

    ``sha256``: what the file must still hold; one that does not (or is gone)
    is not sent and its result is "damaged". ``meta`` None: read from the file.
    """

    size: int
    sha256: str | None = None
    meta: FileMeta | None = None


@dataclass(frozen=True)
class _Instance:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    size: int


def status_meaning(code: int) -> str:
    """The standard meaning of a C-STORE status code, e.g. ``A700 Refused: Out of Resources``."""
    from pynetdicom.status import GENERAL_STATUS, STORAGE_SERVICE_CLASS_STATUS

    for table in (STORAGE_SERVICE_CLASS_STATUS, GENERAL_STATUS):
        if code in table:
            return f"{table[code][0]}: {table[code][1]}"
    high = code & 0xFF00
    ranges = {0xA700: "Refused: Out of Resources", 0xA900: "Error: Data Set does not match SOP Class"}
    if high in ranges:
        return ranges[high]
    if 0xC000 <= code <= 0xCFFF:
        return "Error: Cannot understand"
    return "unknown status"


def classify(code: int) -> Outcome:
    """XD3 status classes: success, warning (counts as success), transient (A7xx), failed."""
    if code == 0x0000:
        return "success"
    if code in WARNINGS_AS_SUCCESS:
        return "warning"
    if code & 0xFF00 == 0xA700:
        return "transient"
    return "failed"


def collect_files(paths: Iterable[str | Path], note: Callable[[str], None] | None = None) -> list[Path]:
    """Files named, and every file under directories named, in a stable order; a File-set's
    DICOMDIR (an index, no image: no archive takes it) is left out, with ``note`` saying so."""
    files: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            files.extend(sorted(p for p in item.rglob("*") if p.is_file()))
        elif item.is_file():
            files.append(item)
        else:
            raise UsageError(f"{item} does not exist", "name DICOM files or folders that contain them")
    directories = [path for path in files if path.name.upper() == "DICOMDIR" and _is_dicomdir(path)]
    for path in directories:
        if note is not None:
            note(f"{path} is a DICOMDIR (the index of a CD or USB stick), not an image: left out "
                 "('kiosk import' imports a patient's CD under the local patient)")
    return [path for path in files if path not in directories]


def _is_dicomdir(path: Path) -> bool:
    try:
        return read_meta(path).sop_class_uid == MEDIA_STORAGE_DIRECTORY
    except NotPart10Error:
        return False


def _read_instance(path: Path, known: KnownFile | None = None) -> _Instance | str:
    """The file with what its meta information says (or what is ``known``); a message if it is no Part 10 file.

    A file not ``known`` (the outbox checked those when accepting them) must
    hold a whole data set: a broken one would make the peer abort the association.
    """
    from kiosk.dataset_check import check_complete
    from kiosk.part10 import NotPart10Error, read_meta

    try:
        meta = (known and known.meta) or read_meta(path)
        if known is None:
            check_complete(path, meta.transfer_syntax)
        size = known.size if known else path.stat().st_size
    except NotPart10Error as exc:
        return f"{exc.message}; {exc.hint}" if exc.hint else exc.message
    except OSError as exc:
        return f"cannot read the file ({exc.strerror or exc})"
    return _Instance(path, meta.sop_class_uid, meta.sop_instance_uid, meta.transfer_syntax, size)


def _incomplete(inst: _Instance) -> str | None:
    """Why a file no longer holds a whole data set, or None.

    Needed off the fast path for files the outbox accepted (and so are not
    checked again): pynetdicom re-encodes what pydicom reads and would send a
    file cut short as a shorter data set the peer takes, where the fast path
    sends the file as it is and the peer aborts.
    """
    from kiosk.dataset_check import check_complete
    from kiosk.part10 import NotPart10Error

    try:
        check_complete(inst.path, inst.transfer_syntax)
    except NotPart10Error as exc:
        return f"{exc.message}; {exc.hint}" if exc.hint else exc.message
    return None


def build_contexts(instances: Sequence[_Instance], preferred: str | None = None, fallback: bool = False) -> list:
    """Uncompressed per SOP class; each compressed transfer syntax, and ``preferred``, in a context of its own;
    with ``fallback``, Multi-frame True Color SC in JPEG Baseline for video objects (after their own)."""
    from pynetdicom.presentation import build_context

    wanted: dict[tuple[str, tuple[str, ...]], None] = {}
    for inst in instances:
        if preferred:
            # Alone, so that the peer cannot choose another syntax of the same context instead.
            wanted[(inst.sop_class_uid, (preferred,))] = None
        uncompressed = (EXPLICIT_LE, IMPLICIT_LE) + ((EXPLICIT_BE,) if inst.transfer_syntax == EXPLICIT_BE else ())
        wanted[(inst.sop_class_uid, uncompressed)] = None
        if inst.transfer_syntax not in UNCOMPRESSED:
            wanted[(inst.sop_class_uid, (inst.transfer_syntax,))] = None
        if fallback and video.is_video(inst.sop_class_uid, inst.transfer_syntax):
            wanted[(video.MF_TRUE_COLOR_SC, (video.SYNTAX.uid,))] = None
    # An instance needing Explicit BE adds a context that may duplicate the LE-only one; keep the wider.
    merged: dict[tuple[str, tuple[str, ...]], None] = {}
    for sop_class, syntaxes in wanted:
        if syntaxes == (EXPLICIT_LE, IMPLICIT_LE) and (sop_class, syntaxes + (EXPLICIT_BE,)) in wanted:
            continue
        merged[(sop_class, syntaxes)] = None
    if len(merged) > MAX_CONTEXTS:
        raise UsageError(f"these files need {len(merged)} presentation contexts; one association allows {MAX_CONTEXTS}",
                         "send them in smaller groups (fewer kinds of object or transfer syntaxes at once)")
    return [build_context(sop_class, list(syntaxes)) for sop_class, syntaxes in merged]


def _accepted(assoc) -> dict[str, list[str]]:
    """SOP class -> accepted transfer syntaxes."""
    out: dict[str, list[str]] = {}
    for context in assoc.accepted_contexts:
        out.setdefault(str(context.abstract_syntax), []).extend(str(ts) for ts in context.transfer_syntax)
    return out


def _transcode(inst: _Instance, target: str, why: str) -> "Dataset":
    """The instance re-encoded in ``target``, keeping its identity (a transfer syntax conversion).

    Raises ValueError, NotImplementedError or RuntimeError when pydicom cannot
    decode or encode the pixel data.
    """
    import pydicom
    from pydicom.uid import UID

    ds = pydicom.dcmread(inst.path)
    target_uid, source = UID(target), UID(inst.transfer_syntax)
    if source == EXPLICIT_BE and target_uid.is_little_endian:
        to_little_endian(ds)  # pydicom writes no other byte order than the one read
    if source.is_compressed:
        row = tsx.BY_UID.get(source)
        ds.decompress(decoding_plugin=row.decoder if row else "", generate_instance_uid=False)
    if target_uid.is_compressed:
        if "PixelData" not in ds:
            raise ValueError("it has no pixel data to compress")
        row = tsx.BY_UID.get(target)
        if row is not None:
            ds.PhotometricInterpretation = row.photometric(ds.SamplesPerPixel, ds.PhotometricInterpretation)
        ds.compress(target, encoding_plugin=row.plugin if row else "", generate_instance_uid=False)
    ds.file_meta.TransferSyntaxUID = target
    if ds.original_encoding != (target_uid.is_implicit_VR, target_uid.is_little_endian):
        # Written out in the target encoding and read back: pydicom then looks up the
        # VRs an Implicit VR file lacks, and pynetdicom gets a data set already in the
        # encoding it sends (it refuses one that is not).
        buffer = BytesIO()
        ds.save_as(buffer, implicit_vr=target_uid.is_implicit_VR, little_endian=target_uid.is_little_endian,
                   enforce_file_format=True)
        ds = pydicom.dcmread(BytesIO(buffer.getvalue()))
    log.info("transcoded %s from %s to %s: %s", inst.path.name, source.name, target_uid.name, why)
    return ds


def transcode_file(path: Path, transfer_syntax: str, target: str, why: str) -> "Dataset":
    """The file (in ``transfer_syntax``) re-encoded in ``target``, keeping its identity; ``why`` goes in the log.

    Raises ValueError, NotImplementedError or RuntimeError when pydicom cannot
    decode or encode the pixel data.
    """
    return _transcode(_Instance(Path(path), "", "", transfer_syntax, 0), target, why)


def _send_converted(sender: Any, ds: "Dataset", inst: _Instance, message_id: int) -> "Dataset | None":
    """A converted data set sent from memory by ``sender``, as files are; its status, or None as ``sender.send``.

    pynetdicom's ``send_c_store`` passes a data set through its state machine
    16 KB at a time, holding the interpreter lock: for A4 colour pages (26 MB
    uncompressed) to a PACS that takes no JPEG-LS, pages from the scanner then
    reached it 2.0-2.6 s after leaving the scanner instead of 0.6-0.7 s (p50).
    Its bytes are not the spool file's, so they are not reported as progress.
    """
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    progress, sender.progress = sender.progress, None
    try:
        return sender.send(buffer, inst.sop_class_uid, inst.sop_instance_uid, str(ds.file_meta.TransferSyntaxUID),
                           message_id)
    finally:
        sender.progress = progress


def _send_fallback(sender: Any, made: video.Fallback, message_id: int) -> "Dataset | None":
    """A video object's fallback file sent by ``sender``; its status, or None as ``sender.send``.
    Its bytes are not the spool file's, so they are not reported as progress."""
    progress, sender.progress = sender.progress, None
    try:
        with open(made.path, "rb") as handle:
            return sender.send(handle, made.sop_class_uid, made.sop_instance_uid, video.SYNTAX.uid, message_id)
    finally:
        sender.progress = progress


def _video_refused(node: NodeConfig, inst: _Instance, accepted: Mapping[str, list[str]]) -> str:
    """Why the peer cannot take ``inst`` as it is, when it is a video object (``kiosk.video.fallback.refusal``);
    "" when it takes it, or when ``inst`` is no video object."""
    if not video.is_video(inst.sop_class_uid, inst.transfer_syntax):
        return ""
    syntaxes = accepted.get(inst.sop_class_uid, [])
    if inst.transfer_syntax in syntaxes:
        return ""
    return video.refusal(node.name, inst.sop_class_uid, inst.transfer_syntax, not syntaxes)


def _no_fallback(refused: str, enabled: bool) -> str:
    """The message of a video object neither it nor its fallback can go to the peer as."""
    if not enabled:
        return (f"{refused}; [video] fallback = true would send it as {video.TITLE}, or send it to a destination "
                "that takes video")
    return f"{refused}, nor {video.TITLE} (its fallback): send it to a destination that takes either"


def preferred_syntax(node: NodeConfig) -> str | None:
    """The destination's ``transfer_syntax`` as a UID when files are converted to it; None for auto and
    for the lossy choices (those make new instances: ``kiosk.outbox.shaping`` derives them before sending)."""
    row = tsx.BY_NAME.get(node.transfer_syntax)
    return row.uid if row is not None and row.transcode else None


def _what_to_send(inst: _Instance, accepted: list[str], preferred: str | None) -> "Path | Dataset":
    """The file itself when its transfer syntax will do, else a transcoded dataset."""
    if preferred and preferred != inst.transfer_syntax and preferred in accepted:
        try:
            return _transcode(inst, preferred, "the destination's transfer_syntax")
        except (ValueError, NotImplementedError, RuntimeError) as exc:
            if inst.transfer_syntax not in accepted:
                raise
            log.info("sending %s as it is: cannot convert it to %s (%s)", inst.path.name, preferred, exc)
    if inst.transfer_syntax in accepted:
        return inst.path
    target = next((ts for ts in UNCOMPRESSED if ts in accepted), accepted[0])
    return _transcode(inst, target, "the peer did not accept the original transfer syntax")


class KeptAssociation:
    """An association ``store_files`` leaves open for the next call (the outbox's back-to-back batches).

    Opening and releasing one costs ~16 ms against storescp, as much as
    sending 30 small images. The next call reuses it when it proposed every
    presentation context that call needs and is still established; otherwise
    it is released and a new one opened. ``close`` releases it.
    """

    def __init__(self) -> None:
        self._held: tuple[Any, Any, frozenset] | None = None  # association, its FileSender, contexts proposed

    def take(self, contexts: Sequence[Any]) -> tuple[Any, Any, frozenset] | None:
        """(association, sender, proposed) if the held one serves ``contexts``; else releases it.

        One instance serves one node: its owner (an outbox destination) never changes it.
        """
        held, self._held = self._held, None
        if held is None:
            return None
        assoc, sender, proposed = held
        if assoc.is_established and _context_keys(contexts) <= proposed:
            return held
        _end(assoc, sender)
        return None

    def hold(self, assoc: Any, sender: Any, proposed: frozenset) -> None:
        self.close()
        if sender is not None:
            sender.close()  # the reactor runs while it waits, so a peer's release or abort is noticed
        self._held = (assoc, sender, proposed)

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            _end(held[0], held[1])


def _context_keys(contexts: Sequence[Any]) -> frozenset:
    return frozenset((str(c.abstract_syntax), tuple(str(ts) for ts in c.transfer_syntax)) for c in contexts)


def _abort(assoc: Any) -> None:
    """Abort ``assoc`` and wake the thread waiting for its response, as pynetdicom does when the peer aborts."""
    assoc.abort()
    assoc.dimse.msg_queue.put((None, None))


def _end(assoc: Any, sender: Any) -> None:
    if sender is not None:
        sender.close()
    release(assoc)


def store_files(node: NodeConfig, local: LocalConfig, paths: Sequence[Path], *,
                progress: Callable[[StoreProgress], None] | None = None,
                cancel: threading.Event | None = None,
                known: Mapping[Path, KnownFile] | None = None, keep: KeptAssociation | None = None,
                fallback_dir: Path | None = None) -> StoreResult:
    """C-STORE ``paths`` (Part 10 files) to ``node`` over one association.

    ``known``: what is known of some files already (see ``KnownFile``).
    ``keep``: reuse the association it holds, and leave this one there
    after a run without failure (the caller closes it).
    ``fallback_dir``: where the Multi-frame True Color SC of a video object
    the peer does not take is made (on disk, e.g. the outbox's; deleted once
    sent); None: such an object fails.
    Returns a result per file. Association-level failures (refused, rejected,
    aborted, timeout, no context) raise ``NetworkError``; its ``partial``
    attribute then holds the results so far, with unsent files "transient".
    Audited (Begin Transferring, Instances Transferred) per call.
    """
    paths = [Path(p) for p in paths]
    audit = Transfer(node, paths)
    audit.begin()
    try:
        result = _store_files(node, local, paths, progress=progress, cancel=cancel, known=known, keep=keep,
                              fallback_dir=fallback_dir)
    except errors.NetworkError as exc:
        partial = exc.partial.results if isinstance(exc.partial, StoreResult) else []
        audit.end([(r.path, r.outcome) for r in partial], exc.message)
        raise
    audit.end([(r.path, r.outcome) for r in result.results])
    return result


def _store_files(node: NodeConfig, local: LocalConfig, paths: Sequence[Path], *,
                 progress: Callable[[StoreProgress], None] | None,
                 cancel: threading.Event | None,
                 known: Mapping[Path, KnownFile] | None, keep: KeptAssociation | None,
                 fallback_dir: Path | None) -> StoreResult:
    result = StoreResult()
    slots: list[InstanceResult | _Instance] = []
    for path in map(Path, paths):
        read = _read_instance(path, known.get(path) if known else None)
        slots.append(InstanceResult(path, "", "", None, "failed", read) if isinstance(read, str) else read)
    instances = [s for s in slots if isinstance(s, _Instance)]
    if not instances:
        result.results = [s for s in slots if isinstance(s, InstanceResult)]
        return result

    from pydicom.uid import UID

    # On the fast path files go as they are (we only send a file unchanged under its own transfer syntax).
    fastpath.prepare_store()

    bytes_total = sum(i.size for i in instances)
    state = {"done": 0, "bytes": 0, "current": None}

    def report(sent_bytes: int = 0) -> None:
        state["bytes"] += sent_bytes
        if progress:
            progress(StoreProgress(state["done"], len(instances), min(state["bytes"], bytes_total), bytes_total, state["current"]))

    preferred = preferred_syntax(node)
    contexts = build_contexts(instances, preferred, fallback=fallback_dir is not None)
    what = "the objects to send (Storage)"
    reused = keep.take(contexts) if keep is not None else None
    if reused is None:
        assoc = associate(node, local, contexts, what=what)
        sender = fastpath.file_sender(assoc)
        proposed = _context_keys(contexts)
    else:
        assoc, sender, proposed = reused
    accepted = _accepted(assoc)
    if sender is not None:
        sender.progress = report if progress else None
    released = False  # while a video object's fallback was made; opened again to send the next instance

    def reopen() -> None:
        nonlocal assoc, sender, accepted, released
        assoc = associate(node, local, contexts, what=what)
        sender = fastpath.file_sender(assoc)
        if sender is not None:
            sender.progress = report if progress else None
        accepted = _accepted(assoc)
        released = False

    stop_reason = ""
    failure_to_raise: errors.NetworkError | None = None
    watch = CancelWatch(cancel, lambda: _abort(assoc), "aborting the association", "store-cancel") \
        if cancel is not None else None
    try:
        for index, slot in enumerate(slots):
            if isinstance(slot, InstanceResult):
                result.results.append(slot)
                continue
            inst = slot
            if stop_reason or (cancel is not None and cancel.is_set()):
                stop_reason = stop_reason or "cancelled before sending"
                result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None, "transient", stop_reason))
                continue
            state["current"] = inst.path
            syntaxes = accepted.get(inst.sop_class_uid)
            refused = _video_refused(node, inst, accepted)
            if refused and (fallback_dir is None or video.SYNTAX.uid not in accepted.get(video.MF_TRUE_COLOR_SC, [])):
                result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None, "failed",
                                                     _no_fallback(refused, fallback_dir is not None)))
                continue
            if not syntaxes and not refused:
                name = UID(inst.sop_class_uid).name
                result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None, "failed",
                                                     f"{node} does not accept {name} (no presentation context)"))
                continue
            expected = known[inst.path].sha256 if known and inst.path in known else None
            try:
                # Opened, and checked against its checksum, before anything of it is used.
                source = open_checked(inst.path, expected)
            except FileChanged as exc:
                result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None, "damaged",
                                                     str(exc)))
                continue
            except OSError as exc:
                result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None, "failed",
                                                     f"cannot read the file ({exc.strerror or exc})"))
                continue
            with source, ExitStack() as made:
                if known and inst.path in known and not fastpath.enabled() and (problem := _incomplete(inst)):
                    result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None,
                                                         "failed", problem))
                    continue
                payload: Path | Dataset | video.Fallback
                if refused:
                    # Not left open while the frames are encoded: an archive may close an idle association.
                    _end(assoc, sender)
                    released = True
                    try:
                        payload = made.enter_context(video.fallback_file(source, fallback_dir, node.name, cancel))
                    except video.Cancelled:
                        stop_reason = "cancelled before sending"
                        result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None,
                                                             "transient", stop_reason))
                        continue
                    except video.FallbackError as exc:
                        log.warning("%s: %s not sent: its %s cannot be made (%s)", node, inst.path.name, video.TITLE,
                                    exc.message)
                        result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None,
                                                             "failed", f"{refused}, and its {video.TITLE} cannot be "
                                                             f"made: {exc.message}"))
                        continue
                    except OSError as exc:  # e.g. a full disk: tried again later, as a failed send is
                        result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None,
                                                             "transient", f"cannot write the {video.TITLE} for {node}: "
                                                             f"{exc.strerror or exc}"))
                        continue
                    log.info("%s: sending %s as its %s: %s", node, inst.path.name, video.TITLE, refused)
                else:
                    try:
                        payload = _what_to_send(inst, syntaxes, preferred)
                    except Exception as exc:  # noqa: BLE001 - pydicom cannot decode or encode this data set: this one fails
                        log.warning("%s: %s not sent: cannot convert it (%s)", node, inst.path.name, type(exc).__name__)
                        result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None,
                                                             "failed", f"cannot convert to a transfer syntax {node} "
                                                             f"accepts: {exc}"))
                        continue
                if released:
                    try:
                        reopen()
                    except errors.NetworkError as exc:
                        stop_reason = exc.message
                        result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None,
                                                             "transient", exc.message))
                        exc.partial = result
                        failure_to_raise = exc
                        continue
                started_bytes = state["bytes"]
                sent_at = time.monotonic()
                try:
                    status = None
                    if sender is not None and isinstance(payload, Path):
                        status = sender.send(source, inst.sop_class_uid, inst.sop_instance_uid, inst.transfer_syntax,
                                             index + 1)
                    elif sender is not None and isinstance(payload, video.Fallback):
                        status = _send_fallback(sender, payload, index + 1)
                    elif sender is not None:
                        status = _send_converted(sender, payload, inst, index + 1)
                    if status is None:
                        status = assoc.send_c_store(payload.path if isinstance(payload, video.Fallback) else payload,
                                                    msg_id=index + 1)
                except OSError as exc:
                    status = None
                    log.debug("sending %s failed: %s", inst.path, exc)
                except Exception as exc:  # noqa: BLE001 - pynetdicom could not read or encode this one data set
                    if assoc.is_established:
                        log.warning("%s: %s not sent: %s", node, inst.path.name, type(exc).__name__)
                        result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None,
                                                             "failed", f"cannot be sent: {exc}"))
                        continue
                    status = None
            if (status is None or "Status" not in status) and watch is not None and watch.fired:
                stop_reason = "cancelled before sending"
                result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None, "transient",
                                                     f"cancelled while waiting for the answer of {node}"))
                continue
            if status is None or "Status" not in status:
                timed_out = status is not None and time.monotonic() - sent_at >= node.dimse_timeout - 0.05
                failure = (errors.timeout_error(node, f"sending {inst.path.name}", node.dimse_timeout) if timed_out
                           else errors.abort_error(node, f"sending {inst.path.name}"))
                stop_reason = str(failure.message)
                result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, None, "transient",
                                                     stop_reason, in_flight=True))
                failure.partial = result
                failure_to_raise = failure
                continue
            code = int(status.Status)
            outcome = classify(code)
            meaning = f"{code:04X} {status_meaning(code)}"
            comment = str(status.get("ErrorComment", "") or "")
            message = meaning + (f" ({comment})" if comment else "")
            if refused and outcome not in ("success", "warning"):
                message = f"its {video.TITLE} was not stored either: {message} ({refused})"
            if outcome == "warning":
                log.warning("%s: %s stored with warning %s", node, inst.path.name, message)
            elif outcome != "success":
                log.warning("%s: %s not stored: %s", node, inst.path.name, message)
            if outcome == "transient":
                stop_reason = f"not sent: {node} is out of resources ({meaning}); try again later"
            result.results.append(InstanceResult(inst.path, inst.sop_class_uid, inst.sop_instance_uid, code, outcome,
                                                 "" if outcome == "success" else message,
                                                 fallback=video.note(refused) if refused and outcome in ("success", "warning")
                                                 else ""))
            state["done"] += 1
            state["bytes"] = started_bytes + inst.size
            report()
    except BaseException:
        # Interrupted (Ctrl-C) with a request perhaps in flight: a release would wait for its answer.
        assoc.abort()
        raise
    finally:
        if watch is not None:
            watch.end()
        cancelled = cancel is not None and cancel.is_set()
        if keep is not None and failure_to_raise is None and not stop_reason and not cancelled and assoc.is_established:
            keep.hold(assoc, sender, proposed)
        else:
            _end(assoc, sender)
    if failure_to_raise is not None:
        raise failure_to_raise
    return result
