"""One patient's capture session on disk: what a touch-UI ``kiosk.station.Station`` persists.

A session holds the patient/study context picked by the user (a
``StudyContext``, kept in the manifest in its JSON form: the session module
is the one place that stores and reads it back) and the captures in their
review order. Every capture is written to disk (and fsync'ed) the
moment it is added, and the manifest is replaced atomically after every
change, so a crash or power loss loses nothing. A session ends in one of two
ways:

* ``finish()`` once its objects are in the outbox (``Station.send``): the folder is removed;
* ``abandon()`` (idle timeout, "Finish" without sending): the folder is kept,
  marked abandoned, and can be resumed or discarded later (Outbox screen).

Layout on disk: ``<sessions dir>/<session id>/session.json`` plus one
``<capture id>.npy`` (pixels) and/or ``<capture id>.bin`` (encoded original)
per capture, and ``<capture id>.clip<suffix>`` for a video clip (its file,
moved in when the clip is added; its first frame is the ``.npy``); folders
0700, files 0600 (they hold patient data).
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import shutil
import threading
import uuid
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kiosk.capture import Capture, EncodedFormat, SourceKind
from kiosk.errors import KioskError
from kiosk.private import DIR_MODE, fsync_dir, private_dir, private_opener, write_private
from kiosk.study import StudyContext

log = logging.getLogger(__name__)

MANIFEST = "session.json"
OPEN, ABANDONED = "open", "abandoned"


def default_sessions_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("kiosk", appauthor=False)) / "sessions"


def sessions_dir(configured: str) -> Path:
    """The sessions folder ``[ui] sessions_dir`` names, or the default when it is empty."""
    return Path(configured).expanduser() if configured else default_sessions_dir()



def _jsonable(metadata: dict[str, Any]) -> dict[str, Any]:
    """Keep the metadata entries JSON can carry; drop the rest (device handles ...)."""
    out = {}
    for key, value in metadata.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


@dataclass
class Item:
    """A capture in a session with its on-disk id."""

    id: str
    capture: Capture


@dataclass
class Session:
    """One patient's captures in review order, persisted in ``folder``."""

    folder: Path
    context: StudyContext
    items: list[Item] = field(default_factory=list)
    state: str = OPEN
    created: str = field(default_factory=lambda: dt.datetime.now().isoformat(timespec="seconds"))
    series_description: str = ""
    multiframe: bool = False
    on_change: Callable[["Session"], None] | None = field(default=None, repr=False, compare=False)
    # The UI saves from worker threads: the manifest is made and written under one lock, so the last
    # one written is the newest.
    _saving: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    # -- queries ---------------------------------------------------------
    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def captures(self) -> list[Capture]:
        return [item.capture for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def label(self) -> str:
        """A short description without the patient's name (safe for logs): ID, accession, count."""
        return (f"session {self.id} (patient ID {self.context.patient_id or '?'}, "
                f"accession {self.context.accession or '-'}, {len(self.items)} item(s))")

    # -- changes: each one is on disk before it returns --------------------
    def add(self, capture: Capture) -> Item:
        """Append a capture and persist it at once."""
        item = Item(uuid.uuid4().hex[:12], capture)
        self._write_capture(item)
        self.items.append(item)
        self._save()
        return item

    def add_clip(self, clip: Capture) -> Item:
        """Append a video clip (``Capture.is_clip``): its file is moved into the session folder (it
        leaves where the recorder or the importer made it) and the clip is persisted at once."""
        if not clip.is_clip:
            raise ValueError("add_clip takes a video clip capture")
        item = self._adopt(clip)
        self.items.append(item)
        self._save()
        return item

    def replace_clip(self, index: int, clip: Capture) -> None:
        """Put a changed clip (trimmed) in place of the clip at ``index``; the old file goes."""
        old = self.items[index]
        if not (old.capture.is_clip and clip.is_clip):
            raise ValueError("replace_clip replaces a clip with a clip")
        self.items[index] = self._adopt(clip)
        self._save()
        self._remove_files(old.id)

    def _adopt(self, clip: Capture) -> Item:
        item_id = uuid.uuid4().hex[:12]
        source = Path(clip.encoded_path)
        target = self.folder / f"{item_id}.clip{source.suffix or '.mp4'}"
        try:
            _move_in(source, target)
        except OSError as exc:
            raise KioskError(f"the clip cannot be kept in the session ({exc.strerror})",
                             "check that the disk is not full") from None
        item = Item(item_id, dataclasses.replace(clip, encoded_path=target))
        self._write_capture(item)
        return item

    def replace(self, index: int, capture: Capture) -> None:
        """Put an edited capture (rotated, cropped ...) in place of the one at ``index``."""
        old = self.items[index]
        if old.capture.is_clip:
            raise ValueError("clips cannot be edited frame by frame")
        new = Item(uuid.uuid4().hex[:12], capture)
        self._write_capture(new)
        self.items[index] = new
        self._save()
        self._remove_files(old.id)

    def delete(self, index: int) -> None:
        item = self.items.pop(index)
        self._save()
        self._remove_files(item.id)

    def move(self, index: int, new_index: int) -> None:
        """Reorder: move the item at ``index`` to ``new_index`` (clamped to the ends)."""
        item = self.items.pop(index)
        new_index = max(0, min(new_index, len(self.items)))
        self.items.insert(new_index, item)
        self._save()

    def set_options(self, series_description: str | None = None, multiframe: bool | None = None) -> None:
        if series_description is not None:
            self.series_description = series_description
        if multiframe is not None:
            self.multiframe = multiframe
        self._save()

    def abandon(self) -> None:
        """End without sending: keep everything for resume or discard (empty sessions vanish)."""
        if not self.items:
            self.discard()
            return
        self.state = ABANDONED
        self._save()
        log.info("abandoned %s", self.label())

    def resume(self) -> None:
        self.state = OPEN
        self._save()

    def finish(self) -> None:
        """The captures are safely elsewhere (the outbox): remove the session folder."""
        log.info("finished %s", self.label())
        shutil.rmtree(self.folder, ignore_errors=True)
        self.items = []

    def discard(self) -> None:
        """Throw the session away, captures included."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.items = []

    # -- disk ------------------------------------------------------------
    def _write_capture(self, item: Item) -> None:
        capture = item.capture
        if capture.pixels is not None:
            tmp = self.folder / f"{item.id}.npy.tmp"
            with open(tmp, "wb", opener=private_opener) as out:
                np.save(out, capture.pixels, allow_pickle=False)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.folder / f"{item.id}.npy")
        if capture.encoded is not None:
            write_private(self.folder / f"{item.id}.bin", capture.encoded)

    def _remove_files(self, item_id: str) -> None:
        for suffix in (".npy", ".bin"):
            (self.folder / f"{item_id}{suffix}").unlink(missing_ok=True)
        for clip in self.folder.glob(f"{item_id}.clip*"):
            clip.unlink(missing_ok=True)

    def _manifest(self) -> dict[str, Any]:
        def describe(item: Item) -> dict[str, Any]:
            c = item.capture
            return {
                "id": item.id, "kind": c.kind.value, "bits_stored": c.bits_stored,
                "encoded_format": c.encoded_format.value if c.encoded_format else None,
                "has_pixels": c.pixels is not None, "dpi": c.dpi, "index": c.index,
                "acquired_at": c.acquired_at.isoformat(), "source": c.source,
                "frame_rate": c.frame_rate, "metadata": _jsonable(c.metadata),
                "clip_file": c.encoded_path.name if c.is_clip else None,
                "video": c.video.to_json() if c.video is not None else None,
            }

        return {"version": 1, "state": self.state, "created": self.created,
                "context": context_to_dict(self.context),
                "series_description": self.series_description, "multiframe": self.multiframe,
                "items": [describe(i) for i in self.items]}

    def _save(self) -> None:
        with self._saving:
            write_private(self.folder / MANIFEST,
                          json.dumps(self._manifest(), ensure_ascii=False, indent=1).encode())
        if self.on_change:
            self.on_change(self)


def _load_item(folder: Path, entry: dict[str, Any]) -> Item:
    pixels = np.load(folder / f"{entry['id']}.npy", allow_pickle=False) if entry["has_pixels"] else None
    clip_file = entry.get("clip_file")
    if clip_file:
        if not (folder / clip_file).is_file():
            raise ValueError(f"its clip file {clip_file} is missing")
        return Item(entry["id"], _capture_of(entry, pixels, None, folder / clip_file))
    encoded = (folder / f"{entry['id']}.bin").read_bytes() if entry["encoded_format"] else None
    return Item(entry["id"], _capture_of(entry, pixels, encoded))


def _move_in(source: Path, target: Path) -> None:
    """Move a clip file into the session folder: renamed on the same disk, else copied and synced first;
    made private (0600) and durable either way."""
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with open(source, "rb") as src, open(target, "wb", opener=private_opener) as out:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        source.unlink()
    os.chmod(target, 0o600)
    fsync_dir(target.parent)


def _capture_of(entry: dict[str, Any], pixels: Any, encoded: bytes | None, clip: Path | None = None) -> Capture:
    from kiosk.video.facts import VideoFacts

    return Capture(
        kind=SourceKind(entry["kind"]), pixels=pixels, bits_stored=entry["bits_stored"], encoded=encoded,
        encoded_format=EncodedFormat(entry["encoded_format"]) if entry["encoded_format"] else None,
        dpi=entry["dpi"], index=entry["index"], acquired_at=dt.datetime.fromisoformat(entry["acquired_at"]),
        source=entry["source"], frame_rate=entry["frame_rate"], metadata=entry["metadata"], encoded_path=clip,
        video=VideoFacts.from_json(entry["video"]) if entry.get("video") else None,
    )


class SessionStore:
    """The folder holding sessions: start new ones, list and reopen kept ones."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = Path(base) if base else default_sessions_dir()

    def start(self, context: StudyContext) -> Session:
        """A new, empty session for the patient/study ``context``."""
        try:
            private_dir(self.base)
            folder = self.base / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
            folder.mkdir(mode=DIR_MODE)
        except OSError as exc:
            raise KioskError(f"cannot create a session folder in {self.base} ({exc.strerror})",
                             "check that the disk is not full and the folder is writable") from None
        session = Session(folder, context)
        session._save()
        fsync_dir(self.base)
        return session

    def load(self, folder: Path) -> Session:
        """Reopen a kept session from disk."""
        try:
            data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            context = context_from_dict(data["context"])
            items = [_load_item(folder, entry) for entry in data["items"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KioskError(f"the kept session {folder.name} is damaged ({exc})",
                             "discard it from the Outbox screen; its files stay in " + str(folder)) from None
        return Session(folder, context, items, data["state"], data["created"],
                       data.get("series_description", ""), data.get("multiframe", False))

    def kept(self) -> list[Path]:
        """Folders of sessions that were not finished (abandoned, or open when the kiosk stopped)."""
        if not self.base.is_dir():
            return []
        return sorted(p for p in self.base.iterdir() if (p / MANIFEST).is_file())

    def summaries(self) -> list[dict[str, Any]]:
        """For listing kept sessions without loading pixels: folder, state, context (a ``StudyContext``), count."""
        out = []
        for folder in self.kept():
            try:
                data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
                context = context_from_dict(data["context"])
            except (OSError, ValueError, KeyError, TypeError):
                data, context = {"state": "damaged", "items": [], "created": ""}, StudyContext()
            out.append({"folder": folder, "state": data["state"], "context": context,
                        "count": len(data["items"]), "created": data["created"]})
        return out


def context_to_dict(context: StudyContext) -> dict[str, Any]:
    """The study context in its JSON form (``StudyContext.to_json``), as the session manifest keeps it:
    every field, the source's character set and the values edits replaced included."""
    return context.to_json()


def context_from_dict(data: dict[str, Any]) -> StudyContext:
    """The ``StudyContext`` a manifest holds (see ``context_to_dict``)."""
    return StudyContext.from_json(data)
