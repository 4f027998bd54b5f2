"""Where the outbox delivers: one class per kind, chosen by the ``kind`` of a spec.

A destination sends a batch of spooled instances and reports one outcome per
instance; a failure of the whole attempt (the PACS cannot be reached, the
USB stick is gone) is a ``DeliveryError`` saying whether retrying can help.
Adding a kind (DICOMweb STOW-RS) is one class here and one entry in ``KINDS``.

Specs are plain dicts stored in the journal with each destination, so a job
queued for ``AET@host:port`` can still be delivered by a later process.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import threading
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol, Sequence

from kiosk.checksum import FileChanged, open_checked
from kiosk.config import CoerceConfig, Config, NodeConfig, TLSConfig, resolve_node
from kiosk.errors import KioskError, UsageError
from kiosk.part10 import FileMeta

log = logging.getLogger(__name__)

FOLDER_PREFIX = "folder:"

#: Called with (instances done, bytes done) while a batch is being sent.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Item:
    """One spooled instance to deliver."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    size: int
    transfer_syntax: str | None = None  # from the journal; None: read from the file when needed
    # What the file must still hold, checked on the bytes delivered. None: a file the outbox did not
    # accept (``kiosk store``), checked to hold a whole data set before it is sent.
    sha256: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of one item: ``success``, ``warning``, ``transient``, ``failed`` or ``damaged``.

    ``damaged``: the file no longer has the item's SHA-256; it was not delivered.
    ``in_flight``: sent when the attempt failed, unanswered (see ``DeliveryError.partial``).
    ``fallback``: delivered as the Multi-frame True Color SC of a video object the destination does
    not take; says so (``kiosk.video.fallback.note``). Its UIDs are ``kiosk.video.fallback.identity``'s.
    """

    outcome: str
    status: int | None = None
    message: str = ""
    in_flight: bool = False
    fallback: str = ""


@dataclass(frozen=True)
class Commitment:
    """A storage commitment answer, by SOP Instance UID."""

    committed: set[str]
    failed: dict[str, int]
    unconfirmed: set[str]


class DeliveryError(KioskError):
    """The attempt failed; ``transient`` says whether trying later can help.

    ``partial`` holds one outcome per item when some were delivered before
    the failure (e.g. an association aborted mid-batch); the rest are
    ``transient``, the one that was awaiting its answer marked ``in_flight``.
    """

    def __init__(self, message: str, hint: str = "", *, transient: bool = True,
                 partial: list[Outcome] | None = None) -> None:
        super().__init__(message, hint)
        self.transient = transient
        self.partial = partial


class Destination(Protocol):
    """What the worker needs from a destination."""

    name: str
    supports_commitment: bool

    def send(self, items: Sequence[Item], progress: ProgressCallback, cancel: threading.Event) -> list[Outcome]:
        """Deliver ``items`` (one association or one write); one outcome per item, in order."""

    def commit(self, instances: Sequence[tuple[str, str]], timeout: float) -> Commitment:
        """Ask for storage commitment of (SOP Class UID, SOP Instance UID) pairs."""

    def close(self) -> None:
        """Release whatever ``send`` kept open for the next batch."""


_LISTENER_PORT = threading.Lock()
COPIES = "copies"  # under the spool: the temporary folders of shaped copies and video fallbacks


def fallback_folder(config: Config) -> Path | None:
    """Where the fallbacks of video objects are made (``kiosk.video.fallback``): beside the copies of
    ``kiosk.outbox.shaping``, on the spool's disk; None when ``[video] fallback`` is off."""
    from kiosk.outbox.core import OutboxSettings

    return OutboxSettings.from_config(config).spool_dir / COPIES if config.video.fallback else None


def _outcomes(items: Sequence[Item], results: Sequence[Any]) -> list[Outcome]:
    """One outcome per item from ``kiosk.net.store`` results; items without one were not attempted."""
    by_path = {Path(r.path): r for r in results}
    outcomes = []
    for item in items:
        found = by_path.get(Path(item.path))
        if found is None:
            outcomes.append(Outcome("transient", None, "not sent in this association"))
        else:
            outcomes.append(Outcome(found.outcome, found.status, found.message, found.in_flight, found.fallback))
    return outcomes


def node_from_spec(spec: dict[str, Any], configured: NodeConfig | None) -> NodeConfig:
    """The node a journaled spec names: the ``configured`` one when there is one (today's settings:
    an administrator may have fixed its address since the job was queued), else the spec's."""
    if configured is not None:
        return configured
    values = {k: v for k, v in spec.items() if k not in ("kind", "tls", "coerce")}
    return NodeConfig(tls=TLSConfig(**spec["tls"]) if spec.get("tls") else None,
                      coerce=CoerceConfig(**spec["coerce"]) if spec.get("coerce") else None, **values)


class DicomDestination:
    """C-STORE to a DICOM node through ``kiosk.net.store``; storage commitment through ``kiosk.net.commitment``."""

    kind: ClassVar[str] = "dicom"
    supports_commitment = True

    def __init__(self, name: str, node: NodeConfig, config: Config) -> None:
        from kiosk.net.store import KeptAssociation

        self.name = name
        self.node = node
        self.config = config
        self.kept = KeptAssociation()  # batches that follow one another share an association

    @classmethod
    def from_spec(cls, name: str, spec: dict[str, Any], config: Config) -> "DicomDestination":
        return cls(name, node_from_spec(spec, config.destinations.get(name)), config)

    @staticmethod
    def spec_of(node: NodeConfig) -> dict[str, Any]:
        return {"kind": "dicom", **dataclasses.asdict(node)}

    def send(self, items: Sequence[Item], progress: ProgressCallback, cancel: threading.Event) -> list[Outcome]:
        from kiosk.net.errors import NetworkError
        from kiosk.net.store import KnownFile, store_files

        def on_progress(p: Any) -> None:  # kiosk.net.store.StoreProgress
            progress(p.instances_done, p.bytes_done)

        known = {item.path: KnownFile(item.size, item.sha256, FileMeta(item.sop_class_uid, item.sop_instance_uid,
                                                                      item.transfer_syntax) if item.transfer_syntax else None)
                 for item in items if item.sha256 is not None}
        try:
            result = store_files(self.node, self.config.local, [item.path for item in items], progress=on_progress,
                                 cancel=cancel, known=known, keep=self.kept, fallback_dir=fallback_folder(self.config))
        except NetworkError as exc:
            partial = getattr(exc, "partial", None)
            raise DeliveryError(exc.message, exc.hint, transient=exc.transient,
                                partial=_outcomes(items, partial.results) if partial else None) from None
        return _outcomes(items, result.results)

    def close(self) -> None:
        self.kept.close()

    def commit(self, instances: Sequence[tuple[str, str]], timeout: float) -> Commitment:
        return ask_commitment(commitment_node(self.node, self.config), self.config, instances, timeout)


def commitment_node(node: NodeConfig, config: Config) -> NodeConfig:
    """The node that confirms storage commitment of what was sent to ``node``: its ``commitment_node``
    (an archive whose commitment SCP is another AE, or a STOW-RS archive's DICOM side), else ``node``."""
    if not node.commitment_node:
        return node
    other = config.destinations.get(node.commitment_node)
    if other is None or other.stow_url:
        raise DeliveryError(f"the storage commitment node {node.commitment_node!r} of {node.name} is not a configured "
                            "DICOM destination", "fix commitment_node, then 'kiosk outbox retry'", transient=False)
    return other


def ask_commitment(node: NodeConfig, config: Config, instances: Sequence[tuple[str, str]], timeout: float) -> Commitment:
    """Storage commitment of (SOP Class UID, SOP Instance UID) pairs from ``node``, reports taken by our listener."""
    from kiosk.net.commitment import commit_with_listener
    from kiosk.net.errors import NetworkError

    try:
        # Our listener on [local] port takes reports sent on a new association (Orthanc does that);
        # one port, so destinations take turns.
        with _LISTENER_PORT:
            result = commit_with_listener(node, config, instances, timeout=timeout)
    except NetworkError as exc:
        raise DeliveryError(exc.message, exc.hint, transient=exc.transient) from None
    return Commitment(set(result.committed), dict(result.failed), set(result.unconfirmed))


class StowDestination:
    """STOW-RS to a DICOMweb server through ``kiosk.net.stow``; one HTTP session kept between batches.

    A file goes as it is unless the node's ``transfer_syntax`` asks for another
    one than its own; then it is converted in memory (and sent as it is if
    it cannot be). A video object the server refuses for its kind
    (``kiosk.net.stow.refuses_kind``) is sent again as its fallback, in a
    request of its own, when ``[video] fallback`` is on. STOW-RS has no
    storage commitment: with ``commitment_node`` the archive's DICOM side is
    asked for it.
    """

    kind: ClassVar[str] = "stow"

    def __init__(self, name: str, node: NodeConfig, config: Config) -> None:
        from kiosk.net.stow import StowClient

        self.name = name
        self.node = node
        self.config = config
        self.client = StowClient(node)

    @property
    def supports_commitment(self) -> bool:
        return bool(self.node.commitment_node)

    @classmethod
    def from_spec(cls, name: str, spec: dict[str, Any], config: Config) -> "StowDestination":
        return cls(name, node_from_spec(spec, config.destinations.get(name)), config)

    @staticmethod
    def spec_of(node: NodeConfig) -> dict[str, Any]:
        return {"kind": "stow", **dataclasses.asdict(node)}

    def send(self, items: Sequence[Item], progress: ProgressCallback, cancel: threading.Event) -> list[Outcome]:
        from kiosk.net.errors import NetworkError
        from kiosk.net.store import preferred_syntax

        preferred = preferred_syntax(self.node)
        slots = [self._part(item, preferred) for item in items]
        parts = [slot for slot in slots if not isinstance(slot, Outcome)]
        try:
            results = self.client.store(parts, progress, cancel)
        except NetworkError as exc:
            partial = None
            if exc.partial is not None:
                answered = iter(Outcome(r.outcome, r.status, r.message, r.in_flight) for r in exc.partial)
                partial = [slot if isinstance(slot, Outcome) else next(answered) for slot in slots]
            raise DeliveryError(exc.message, exc.hint, transient=exc.transient, partial=partial) from None
        answered = iter(results)
        return [slot if isinstance(slot, Outcome) else self._outcome(item, slot, next(answered), cancel)
                for item, slot in zip(items, slots)]

    def _outcome(self, item: Item, part: Any, result: Any, cancel: threading.Event) -> Outcome:
        """The outcome of ``part`` (its ``kiosk.net.stow.Result``): the fallback's when the server refused a
        video object for its kind."""
        from kiosk.net.stow import refuses_kind, reason_text
        from kiosk.part10 import NotPart10Error, read_meta
        from kiosk.video import fallback as video

        answered = Outcome(result.outcome, result.status, result.message, result.in_flight)
        if not refuses_kind(result):
            return answered
        try:
            syntax = item.transfer_syntax or read_meta(item.path).transfer_syntax
        except NotPart10Error:
            return answered
        if not video.is_video(part.sop_class_uid, syntax):
            return answered
        refused = video.refusal(self.node.name, part.sop_class_uid, syntax, result.status in (0x0122, 0xA900))
        refused += f" ({reason_text(result.status) if result.status is not None else f'HTTP {result.http_status}'})"
        folder = fallback_folder(self.config)
        if folder is None:
            return dataclasses.replace(answered, message=f"{result.message}; [video] fallback = true would send it "
                                       f"as {video.TITLE}")
        return self._send_fallback(item, refused, folder, cancel)

    def _send_fallback(self, item: Item, refused: str, folder: Path, cancel: threading.Event) -> Outcome:
        """Make the fallback of ``item`` and send it in a request of its own; its outcome."""
        from kiosk.net.errors import NetworkError
        from kiosk.net.stow import Part
        from kiosk.video import fallback as video

        try:
            with open_checked(item.path, item.sha256) as source, \
                    video.fallback_file(source, folder, self.node.name, cancel) as made:
                log.info("%s: sending %s as its %s: %s", self.node, item.path.name, video.TITLE, refused)
                [result] = self.client.store([Part(made.path, made.sop_class_uid, made.sop_instance_uid, made.size)],
                                             None, cancel)
        except FileChanged as exc:
            return Outcome("damaged", None, str(exc))
        except video.Cancelled:
            return Outcome("transient", None, "cancelled before sending")
        except video.FallbackError as exc:
            log.warning("%s: %s not sent: its %s cannot be made (%s)", self.node, item.path.name, video.TITLE,
                        exc.message)
            return Outcome("failed", None, f"{refused}, and its {video.TITLE} cannot be made: {exc.message}")
        except NetworkError as exc:
            return Outcome("transient" if exc.transient else "failed", None, exc.message)
        except OSError as exc:  # e.g. a full disk: tried again later, as a failed send is
            return Outcome("transient", None, f"cannot write the {video.TITLE} for {self.node.name}: "
                           f"{exc.strerror or exc}")
        if result.outcome in ("success", "warning"):
            return Outcome(result.outcome, result.status, result.message, fallback=video.note(refused))
        return Outcome(result.outcome, result.status, f"its {video.TITLE} was not stored either: {result.message} "
                       f"({refused})", result.in_flight)

    def _part(self, item: Item, preferred: str | None) -> Any:
        """The ``kiosk.net.stow.Part`` for an item (converted if the node asks for it), or a failed Outcome."""
        from kiosk.dataset_check import check_complete
        from kiosk.net.store import transcode_file
        from kiosk.net.stow import Part
        from kiosk.part10 import NotPart10Error, read_meta

        try:
            meta = (FileMeta(item.sop_class_uid, item.sop_instance_uid, item.transfer_syntax)
                    if item.transfer_syntax else read_meta(item.path))
            if item.sha256 is None:
                check_complete(item.path, meta.transfer_syntax)  # the outbox checked its own files when accepting them
        except NotPart10Error as exc:
            return Outcome("failed", None, f"{exc.message}; {exc.hint}" if exc.hint else exc.message)
        part = Part(item.path, meta.sop_class_uid, meta.sop_instance_uid, item.size, item.sha256)
        if not preferred or preferred == meta.transfer_syntax:
            return part
        try:
            with open_checked(item.path, item.sha256):
                pass  # a file that changed is not converted: it is not what was accepted
            ds = transcode_file(item.path, meta.transfer_syntax, preferred, "the destination's transfer_syntax")
        except FileChanged as exc:
            return Outcome("damaged", None, str(exc))
        except (OSError, ValueError, NotImplementedError, RuntimeError) as exc:
            log.info("sending %s as it is: cannot convert it to %s (%s)", item.path.name, preferred, exc)
            return part
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        return dataclasses.replace(part, size=len(data), data=data)

    def commit(self, instances: Sequence[tuple[str, str]], timeout: float) -> Commitment:
        if not self.node.commitment_node:
            raise DeliveryError("STOW-RS cannot confirm storage commitment",
                                "set commitment_node to the archive's DICOM destination", transient=False)
        return ask_commitment(commitment_node(self.node, self.config), self.config, instances, timeout)

    def close(self) -> None:
        self.client.close()


class FolderDestination:
    """A PDI File-set with a DICOMDIR in a folder (CD/USB media export): ``kiosk.media.pdi`` writes it
    in the spec's media profile (``[media] profile`` when it was queued; today's for older jobs).

    Each batch adds its instances to the File-set (an instance already in it is kept as it is).
    """

    kind: ClassVar[str] = "folder"
    supports_commitment = False

    def __init__(self, name: str, folder: Path, profile: str = "STD-GEN-CD", web_content: bool = True) -> None:
        self.name = name
        self.folder = Path(folder)
        self.profile = profile
        self.web_content = web_content

    @classmethod
    def from_spec(cls, name: str, spec: dict[str, Any], config: Config) -> "FolderDestination":
        return cls(name, Path(spec["path"]), spec.get("profile", config.media.profile),
                   spec.get("web_content", config.media.web_content))

    @staticmethod
    def spec_of(folder: Path, profile: str = "STD-GEN-CD", web_content: bool = True) -> dict[str, Any]:
        return {"kind": "folder", "path": str(folder), "profile": profile, "web_content": web_content}

    def send(self, items: Sequence[Item], progress: ProgressCallback, cancel: threading.Event) -> list[Outcome]:
        from kiosk.media.pdi import ExportError, write_file_set
        from kiosk.media.profiles import PROFILES

        if not self.folder.is_dir():
            raise DeliveryError(f"the export folder {self.folder} is not there",
                                "insert the USB stick or medium, or create the folder")
        profile = PROFILES.get(self.profile)
        if profile is None:
            raise DeliveryError(f"the media profile {self.profile!r} of {self.name} is unknown",
                                "remove its jobs ('kiosk outbox remove') and send again", transient=False)
        outcomes: dict[Path, Outcome] = {}
        for item in items:  # checked before the copy (pdi copies files by the kernel, unread by Python)
            try:
                open_checked(item.path, item.sha256).close()
            except FileChanged as exc:
                outcomes[Path(item.path)] = Outcome("damaged", None, str(exc))
            except OSError as exc:
                outcomes[Path(item.path)] = Outcome("failed", None, f"cannot read {item.path}: {exc.strerror or exc}")
        wanted = [Path(item.path) for item in items if Path(item.path) not in outcomes]
        sizes = {Path(item.path): item.size for item in items}
        done_bytes = 0

        def on_progress(done: int, total: int) -> None:
            nonlocal done_bytes
            done_bytes += sizes.get(wanted[done - 1], 0)
            progress(done, done_bytes)

        try:
            result = write_file_set(self.folder, wanted, profile, web_content=self.web_content,
                                    progress=on_progress, cancel=cancel)
        except ExportError as exc:
            raise DeliveryError(exc.message, exc.hint, transient=exc.errno in (errno.ENOSPC, errno.EIO, errno.ENOENT)
                                if exc.errno is not None else False) from None
        for path, reason in result.failed:
            outcomes[path] = Outcome("transient" if reason == "cancelled" else "failed", None, reason)
        for path in result.written:
            outcomes[path] = Outcome("success")
        return [outcomes.get(Path(item.path), Outcome("transient", None, "not written")) for item in items]

    def commit(self, instances: Sequence[tuple[str, str]], timeout: float) -> Commitment:
        raise DeliveryError("a folder cannot confirm storage commitment", transient=False)

    def close(self) -> None:
        pass  # nothing is kept open between batches


KINDS: dict[str, Any] = {cls.kind: cls for cls in (DicomDestination, StowDestination, FolderDestination)}


def preload() -> None:
    """Import the network code (pydicom, pynetdicom: ~0.3 s) now, so that the first association does not wait for it."""
    import pynetdicom  # noqa: F401

    import kiosk.net.fastpath.pdata  # noqa: F401
    import kiosk.net.store  # noqa: F401


def destination_from_spec(name: str, spec: dict[str, Any], config: Config) -> Destination:
    """Build the destination a journaled spec describes."""
    kind = spec.get("kind")
    configured = config.destinations.get(name)
    if kind in (DicomDestination.kind, StowDestination.kind) and configured is not None:
        # Today's settings decide, as for the address: a PACS moved from DIMSE to DICOMweb (or back).
        kind = spec_of_node(configured)["kind"]
    if kind not in KINDS:
        raise DeliveryError(f"destination {name!r} has an unknown kind {kind!r}",
                            "remove its jobs ('kiosk outbox remove') and send again", transient=False)
    return KINDS[kind].from_spec(name, spec, config)


def parse_destination(config: Config, text: str) -> tuple[str, dict[str, Any]]:
    """``--to`` text -> (name, spec): a configured node, ``AET@host:port`` or ``folder:PATH``."""
    if text.startswith(FOLDER_PREFIX):
        folder = Path(text[len(FOLDER_PREFIX):]).expanduser()
        if not str(folder).strip():
            raise UsageError("folder: needs a path", "write e.g. folder:/media/usb")
        folder = folder.resolve()
        return f"{FOLDER_PREFIX}{folder}", FolderDestination.spec_of(folder, config.media.profile,
                                                                     config.media.web_content)
    node = resolve_node(config, text)
    return node.name, spec_of_node(node)


def spec_of_node(node: NodeConfig) -> dict[str, Any]:
    """The spec of a configured destination: STOW-RS when it has a ``stow_url``, else DICOM."""
    return (StowDestination if node.stow_url else DicomDestination).spec_of(node)
