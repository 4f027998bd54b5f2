"""The copies one destination gets: coerced (``kiosk.coerce``) and/or lossy (``kiosk.lossy``), made just before sending.

``shaped(items, node, folder)`` takes the spooled items of a batch and the
destination's node and yields a ``Shaped``: the items to send and the
outcomes of those refused (``failed``, with the reason naming the attribute;
``damaged`` when a spool file no longer has its SHA-256). A destination with
neither coercion nor a lossy ``transfer_syntax`` costs nothing: its items
are passed on untouched. Otherwise each spool file is read once, checked
against its SHA-256 on the bytes read, changed in memory and written as a
0600 copy in a private temporary folder under ``folder``; the copies are
deleted when the block ends. The spool file, and the user's original, are
never changed.

Coercion keeps the SOP Instance UID; a lossy copy has its own
(``kiosk.lossy.derived_uid``). ``sent_identity`` says what a destination got
under which UIDs, without making the copy, for storage commitment; also for
a video object sent as its fallback (made when sending, ``kiosk.video.fallback``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Iterator, Sequence

from kiosk import coerce, lossy
from kiosk.checksum import FileChanged, open_checked
from kiosk.config import NodeConfig
from kiosk.errors import KioskError
from kiosk.outbox.destinations import COPIES, Item, Outcome
from kiosk.private import DIR_MODE, private_dir, private_opener

log = logging.getLogger(__name__)

STALE = 24 * 3600.0  # s; a temporary folder this old was left by a process that died


@dataclass
class Shaped:
    """A batch as one destination gets it: ``items`` to send, in order, and ``refused`` (index of the
    input item -> its outcome) for those not sent."""

    items: list[Item]
    refused: dict[int, Outcome] = field(default_factory=dict)

    def merge(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """One outcome per input item, in input order: ``outcomes`` (one per item of ``items``) and the refused."""
        sent = iter(outcomes)
        return [self.refused[index] if index in self.refused else next(sent)
                for index in range(len(self.items) + len(self.refused))]


def needs_shaping(node: NodeConfig | None) -> bool:
    """Whether copies for ``node`` differ from the spool files at all."""
    return node is not None and (coerce.active(node.coerce) or lossy.lossy_syntax(node.transfer_syntax) is not None)


@contextmanager
def shaped(items: Sequence[Item], node: NodeConfig | None, folder: Path) -> Iterator[Shaped]:
    """The ``items`` as ``node`` gets them (see the module); ``node`` None (a folder destination) or a node
    without rules: the items themselves. Temporary copies go under ``folder`` (the spool folder)."""
    if not needs_shaping(node):
        yield Shaped(list(items))
        return
    work = _work_folder(Path(folder))
    try:
        result = Shaped([])
        for index, item in enumerate(items):
            outcome = _shape(item, node, work, result.items)
            if outcome is not None:
                result.refused[index] = outcome
        yield result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sent_identity(item: Item, node: NodeConfig | None, video_fallback: bool = False) -> tuple[str, str]:
    """(SOP Class UID, SOP Instance UID) under which ``node`` got ``item``: the class after
    ``sop_class_fallback``, the derived UID of a lossy copy; with ``video_fallback`` (the job says
    the destination got a video object's fallback) that one's. Reads the spool file's header only
    when the destination takes a lossy syntax (whether a copy was derived depends on the object)."""
    if video_fallback and node is not None:
        from kiosk.video.fallback import identity

        return identity(item.sop_instance_uid, node.name)
    if not needs_shaping(node):
        return item.sop_class_uid, item.sop_instance_uid
    sop_class = coerce.sent_sop_class(item.sop_class_uid, node.coerce)
    row = lossy.lossy_syntax(node.transfer_syntax)
    if row is None:
        return sop_class, item.sop_instance_uid
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        header = dcmread(item.path, stop_before_pixels=True)
    except (OSError, InvalidDicomError, ValueError):
        return sop_class, item.sop_instance_uid  # gone or damaged: the commitment request says what the PACS has
    if lossy.derives(header, str(header.file_meta.TransferSyntaxUID)):
        return sop_class, lossy.derived_uid(item.sop_instance_uid, node.name, row.uid)
    return sop_class, item.sop_instance_uid


def describe(node: NodeConfig) -> list[str]:
    """One line per change the copies sent to ``node`` get (``kiosk send --explain``); empty: sent as they are."""
    return coerce.describe(node.coerce) + lossy.describe(node.transfer_syntax)


def _work_folder(folder: Path) -> Path:
    """A new private temporary folder under ``folder/copies``, after deleting ones a dead process left."""
    copies = folder / COPIES
    private_dir(copies)
    cutoff = time.time() - STALE
    for old in copies.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:
            pass  # another process's batch, just finished
    work = Path(tempfile.mkdtemp(dir=copies))
    os.chmod(work, DIR_MODE)  # mkdtemp makes it 0700 already; said here, as every private folder is
    return work


def _shape(item: Item, node: NodeConfig, work: Path, ready: list[Item]) -> Outcome | None:
    """Append the copy of ``item`` (or ``item`` itself) to ``ready``; or return why it is not sent."""
    from pydicom import dcmread

    from kiosk.part10 import set_file_meta

    row = lossy.lossy_syntax(node.transfer_syntax)
    try:
        with open_checked(item.path, item.sha256) as handle:
            ds = dcmread(handle)
        syntax = str(ds.file_meta.TransferSyntaxUID)
        derive = row is not None and lossy.derives(ds, syntax)
        if not derive and not coerce.active(node.coerce):
            ready.append(item)  # already lossy, or no pixels: sent as it is
            return None
        if node.coerce is not None:
            coerce.apply(ds, node.coerce)
        if derive:
            lossy.derive(ds, row, node.name, item.sop_class_uid)
            log.info("%s: instance %s sent as its lossy copy %s (%s)", node.name, item.sop_instance_uid,
                     ds.SOPInstanceUID, row.name)
        set_file_meta(ds)
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
    except FileChanged as exc:
        return Outcome("damaged", None, str(exc))
    except OSError as exc:
        return Outcome("failed", None, f"cannot read {item.path}: {exc.strerror or exc}")
    except KioskError as exc:  # coerce.Refused, or pixels the lossy syntax cannot hold
        log.warning("%s: instance %s not sent: %s", node.name, item.sop_instance_uid, exc.message)
        return Outcome("failed", None, f"not sent to {node.name}: {exc}")
    except Exception as exc:  # noqa: BLE001 - pydicom cannot read, change or write this one object: it alone fails
        log.warning("%s: instance %s not sent: cannot prepare its copy (%s)", node.name, item.sop_instance_uid,
                    type(exc).__name__)
        return Outcome("failed", None, f"not sent to {node.name}: its copy cannot be made ({type(exc).__name__}: {exc})")
    data = buffer.getvalue()
    path = work / f"{len(ready):05d}.dcm"
    try:
        with open(path, "xb", opener=private_opener) as out:
            out.write(data)
    except OSError as exc:  # e.g. a full disk: tried again later, as a failed send is
        path.unlink(missing_ok=True)
        return Outcome("transient", None, f"cannot write the copy for {node.name}: {exc.strerror or exc}")
    ready.append(dataclasses.replace(item, path=path, sop_class_uid=str(ds.SOPClassUID),
                                     sop_instance_uid=str(ds.SOPInstanceUID), size=len(data),
                                     transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
                                     sha256=hashlib.sha256(data).hexdigest()))
    return None
