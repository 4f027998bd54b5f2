"""The Inbox's store: documents that wait for a person (print jobs and watched-folder files no rule filed).

Each held document is a folder of its own under ``<user data dir>/inbox`` (0700)::

    <id>/document.pdf   the document (PDF, image or DICOM file; its original suffix), 0600
    <id>/item.json      what the Inbox shows: source, name, user, host, received, reason; 0600

An item is made in a hidden folder (``.<id>.new``) and renamed into place once both files are on
disk (fsync), so a crash never leaves half an item; it is removed the same way in reverse
(renamed to ``.<id>.gone`` first). Nothing is kept in memory: every process (the touch UI, the
delivery service) sees the same items, and they survive restarts.

``reason`` says why no rule filed the document, in words that hold no more patient data than the
document's name itself (the runner writes it so).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk.private import FILE_MODE, fsync_dir, private_dir, private_opener, write_private

if TYPE_CHECKING:
    from kiosk.capture import Capture
    from kiosk.config import Config

log = logging.getLogger(__name__)

RECORD = "item.json"
DOCUMENT = "document"
SOURCES = ("print", "folder")
STALE_SECONDS = 3600  # a hidden .new/.gone folder this old was left by a crash, not by a process at work
_ID = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9a-f]{12}")
_CHUNK = 1 << 20


def default_inbox_dir() -> Path:
    """``<user data dir>/inbox``, beside the sessions (kiosk/session.py)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("kiosk", appauthor=False)) / "inbox"


@dataclass(frozen=True)
class InboxItem:
    """One held document. ``original``: where the document's source file waits meanwhile (a watched
    folder's ``held/``), moved on by ``release`` and ``discard``; empty for none."""

    id: str  # stable, safe as a file name
    path: Path  # the document (PDF, image or DICOM file), private (0600)
    source: str  # "print" or "folder"
    name: str  # the original file name, or the print job's title
    user: str = ""  # print job: the submitting user
    host: str = ""  # print job: the submitting host
    received: str = ""  # ISO 8601, when it arrived
    reason: str = ""  # why it waits for a person (no patient data beyond what the name shows)
    original: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


class Inbox:
    """The held documents under ``base`` (default ``<user data dir>/inbox``)."""

    def __init__(self, config: "Config | None" = None, base: Path | None = None) -> None:
        self.base = Path(base) if base is not None else default_inbox_dir()
        private_dir(self.base)
        self._sweep()

    # -- reading ---------------------------------------------------------------------------------
    def held(self) -> list[InboxItem]:
        """Every held document, oldest first."""
        items = [item for folder in self._folders() if (item := self._load(folder)) is not None]
        return sorted(items, key=lambda item: (item.received, item.id))

    def get(self, item_id: str) -> InboxItem | None:
        """The item, or None if there is none (released, discarded, or an id that is no item's)."""
        if not _ID.fullmatch(item_id or ""):
            return None
        return self._load(self.base / item_id)

    def holding(self, original: Path) -> InboxItem | None:
        """The item whose source file is ``original`` (a file held once, not yet moved aside), or None."""
        wanted = str(original)
        return next((item for item in self.held() if item.original == wanted), None)

    # -- changing --------------------------------------------------------------------------------
    def hold(self, file: Path, *, source: str, name: str, reason: str, user: str = "", host: str = "",
             original: str = "") -> InboxItem:
        """Keep a private copy of ``file`` with why it waits; durable when this returns. ``file`` is
        left as it is (the caller moves or removes it once this returned)."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        now = dt.datetime.now().astimezone()
        item_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
        work = self.base / f".{item_id}.new"
        private_dir(work)
        try:
            document = work / (DOCUMENT + _suffix(file))
            _copy_durably(Path(file), document)
            item = InboxItem(item_id, self.base / item_id / document.name, source, name, user, host,
                             now.isoformat(timespec="seconds"), reason, original)
            record = {k: v for k, v in item.to_json().items() if k not in ("id", "path")}
            record["document"] = document.name
            write_private(work / RECORD, json.dumps(record, indent=1, ensure_ascii=False).encode())
            fsync_dir(work)
            os.rename(work, self.base / item_id)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        fsync_dir(self.base)
        log.info("inbox: holding %s document %s as %s", source, name, item_id)
        return item

    def release(self, item_id: str) -> None:
        """Its objects are in the outbox: the held copy goes, and its source file moves to ``done/``."""
        self._remove(item_id, "done", "")

    def discard(self, item_id: str, why: str = "discarded in the Inbox; nothing was sent") -> None:
        """A person threw it away: the held copy goes; its source file moves to ``failed/`` with ``why``."""
        self._remove(item_id, "failed", why)

    # -- inside ----------------------------------------------------------------------------------
    def _remove(self, item_id: str, to: str, why: str) -> None:
        item = self.get(item_id)
        if item is None:
            return  # already gone: releasing twice (two screens, a retry) is harmless
        if item.original:
            from kiosk.inbox.folders import move_aside

            original = Path(item.original)
            sidecar = (original.with_suffix(".json"),) if item.source == "print" else ()
            try:
                move_aside(original, original.parent.parent, to, why, also=sidecar)
            except OSError as exc:
                log.warning("inbox: %s stays in held/ (%s)", item.original, exc.strerror)
        gone = self.base / f".{item_id}.gone"
        os.rename(self.base / item_id, gone)
        shutil.rmtree(gone, ignore_errors=True)
        log.info("inbox: %s %s", "released" if to == "done" else "discarded", item_id)

    def _folders(self) -> list[Path]:
        try:
            return [p for p in self.base.iterdir() if _ID.fullmatch(p.name) and p.is_dir()]
        except FileNotFoundError:
            return []

    def _load(self, folder: Path) -> InboxItem | None:
        try:
            data = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("inbox: %s cannot be read (%s); left as it is", folder / RECORD, exc)
            return None
        known = {f.name for f in fields(InboxItem)} - {"id", "path"}
        values = {k: str(v) for k, v in data.items() if k in known}
        return InboxItem(folder.name, folder / str(data.get("document", DOCUMENT)), **values)

    def _sweep(self) -> None:
        """Remove what a crash left half made or half removed (old enough that no process is at it)."""
        try:
            entries = list(self.base.iterdir())
        except OSError:
            return
        for path in entries:
            if path.name.startswith(".") and path.name.endswith((".new", ".gone")):
                try:
                    if time.time() - path.stat().st_mtime > STALE_SECONDS:
                        shutil.rmtree(path, ignore_errors=True)
                except OSError:
                    continue


def documents_of(item: InboxItem, as_pages: bool = False) -> list["Capture"]:
    """The held document as captures for a session: a PDF as it is (Encapsulated PDF), or its pages
    as images with ``as_pages``; an image file's pages. Raises ``FileLoadError``."""
    from kiosk.inbox.documents import captures_of

    return captures_of(item.path, as_pages)


def _suffix(file: Path) -> str:
    suffix = Path(file).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def _copy_durably(source: Path, target: Path) -> None:
    with open(source, "rb") as src, open(target, "xb", opener=private_opener) as out:
        while chunk := src.read(_CHUNK):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(target, FILE_MODE)

