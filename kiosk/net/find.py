"""C-FIND SCU shared by the worklist and the PACS query: streamed results, C-CANCEL, date filters."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterator

from kiosk import transfer_syntaxes as tsx
from kiosk.audit import events, trail
from kiosk.audit.codes import Outcome
from kiosk.config import LocalConfig, NodeConfig
from kiosk.errors import UsageError
from kiosk.net import errors
from kiosk.net.nodes import associate, release

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

PENDING = (0xFF00, 0xFF01)
CANCELLED = 0xFE00


def date_filter(text: str | None, today: dt.date | None = None) -> str:
    """``today``, ``YYYYMMDD`` or ``YYYYMMDD-YYYYMMDD`` (either end open) as a DICOM DA matching value; '' for any."""
    if text is None or text.strip().lower() in ("", "any", "all"):
        return ""
    text = text.strip().lower()
    if text == "today":
        return (today or dt.date.today()).strftime("%Y%m%d")
    if not re.fullmatch(r"\d{8}|\d{8}-|-\d{8}|\d{8}-\d{8}", text):
        raise UsageError(f"date {text!r} is not understood", "write today, YYYYMMDD, or a range YYYYMMDD-YYYYMMDD")
    for part in filter(None, text.split("-")):
        try:
            dt.datetime.strptime(part, "%Y%m%d")
        except ValueError:
            raise UsageError(f"{part} is not a calendar date", "write dates as YYYYMMDD, e.g. 20260131") from None
    return text


def time_filter(text: str | None) -> str:
    """``HHMM``, ``HHMMSS`` or a range ``HHMM-HHMM`` (either end open) as a DICOM TM matching value; '' for any."""
    if text is None or not text.strip():
        return ""
    text = text.strip().replace(":", "")
    parts = text.split("-")
    if len(parts) > 2 or not all(re.fullmatch(r"([01]\d|2[0-3])[0-5]\d([0-5]\d)?", p) for p in parts if p) \
            or not any(parts):
        raise UsageError(f"time {text!r} is not understood", "write HHMM, HHMMSS or a range HHMM-HHMM, e.g. 0800-1200")
    return text


def query_charset(*values: str) -> str | None:
    """The Specific Character Set for matching values: none for ASCII, Latin-1 if it fits, else UTF-8.

    Many SCPs (DCMTK's wlmscpfs among them) match names byte for byte without
    converting character sets, so the narrowest common one matches most items.
    """
    text = "".join(v or "" for v in values)
    if text.isascii():
        return None
    try:
        text.encode("latin-1")
        return "ISO_IR 100"
    except UnicodeEncodeError:
        return "ISO_IR 192"


class Matches:
    """The matches of one C-FIND, as they arrive (iterate once).

    Once iteration ends, ``truncated`` tells whether the query was cut at
    ``limit`` while the node had more to send: the caller must say so, or
    people miss the item they look for and create a duplicate. A match
    beyond the limit is what shows there are more; it is not yielded.
    """

    def __init__(self, source: Callable[["Matches"], Iterator["Dataset"]], limit: int) -> None:
        self.limit = limit
        self.truncated = False
        self._iterator = source(self)

    def __iter__(self) -> Iterator["Dataset"]:
        return self._iterator


def find(node: NodeConfig, local: LocalConfig, model: str, identifier: "Dataset", *,
         cancel: threading.Event | None = None, limit: int = 0, what: str = "the query") -> Matches:
    """The matches as they arrive; C-CANCEL when ``cancel`` is set or beyond ``limit`` matches (0: no limit).

    Iterating raises ``NetworkError`` on association failures, timeouts and a failure status.
    """
    return Matches(lambda matches: _audited(node, local, model, identifier, cancel, what, matches), limit)


def _audited(node: NodeConfig, local: LocalConfig, model: str, identifier: "Dataset",
             cancel: threading.Event | None, what: str, matches: Matches) -> Iterator["Dataset"]:
    """The matches, and a Query audit message once the query ended (outcome 8 when it failed)."""
    problem = ""
    try:
        yield from _responses(node, local, model, identifier, cancel, what, matches)
    except errors.NetworkError as exc:
        problem = exc.message
        raise
    finally:
        _audit_query(node, model, identifier, problem)


def _audit_query(node: NodeConfig, model: str, identifier: "Dataset", problem: str) -> None:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    try:
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False  # Explicit VR Little Endian, as sent
        write_dataset(buffer, identifier)
        data = buffer.getvalue()
    except Exception:  # noqa: BLE001 - the query went out; its audit message says so without the identifier
        data = b""
    trail.record(events.query(trail.application(), trail.peer(node), model, data,
                              Outcome.SERIOUS_FAILURE if problem else Outcome.SUCCESS, trail.operator(), problem))


def _responses(node: NodeConfig, local: LocalConfig, model: str, identifier: "Dataset",
               cancel: threading.Event | None, what: str, matches: Matches) -> Iterator["Dataset"]:
    # The package first: a submodule import does not wait for another thread (the UI's listener)
    # still initialising the package, and then fails on pynetdicom's circular imports.
    import pynetdicom  # noqa: F401
    from pynetdicom.presentation import build_context

    context = build_context(model, [tsx.EXPLICIT_LE.uid, tsx.IMPLICIT_LE.uid])
    assoc = associate(node, local, [context], what=what)
    limit = matches.limit
    try:
        context_id = assoc.accepted_contexts[0].context_id
        count = 0
        cancelled = False
        message_id = 1
        last_answer = time.monotonic()
        responses = assoc.send_c_find(identifier, model, msg_id=message_id)
        for status, match in responses:
            if "Status" not in status:
                raise _no_answer(node, what, time.monotonic() - last_answer)
            last_answer = time.monotonic()
            code = int(status.Status)
            if code in PENDING:
                if cancelled or match is None:
                    continue  # matches still in flight after our C-CANCEL
                if limit and count >= limit:
                    # One match beyond the limit proves there are more (the final status cannot:
                    # a node that reads our C-CANCEL before it says Success answers Cancelled).
                    matches.truncated = True
                    log.info("cancelling %s on %s after %d matches (the maximum)", what, node, count)
                    assoc.send_c_cancel(message_id, context_id)
                    cancelled = True
                    continue
                count += 1
                yield match
                if cancel is not None and cancel.is_set():
                    log.info("cancelling %s on %s on request", what, node)
                    assoc.send_c_cancel(message_id, context_id)
                    cancelled = True
            elif code in (0x0000, CANCELLED):
                return
            else:
                # The peer's own text ends up on a terminal: no control characters.
                comment = re.sub(r"[\x00-\x1f\x7f-\x9f]", "\ufffd", str(status.get("ErrorComment", "") or ""))
                raise errors.NetworkError(
                    f"{node} failed {what} with status {code:04X}" + (f" ({comment})" if comment else ""),
                    "check the search filters; the node may not support some of them", node=node, transient=False)
    finally:
        release(assoc)


def _no_answer(node: NodeConfig, what: str, waited: float) -> errors.NetworkError:
    """pynetdicom ends the responses the same way when the node aborts and when our timeout
    expires (it aborts then); the time waited since the last answer tells them apart."""
    for setting in sorted(("dimse_timeout", "network_timeout"), key=lambda name: getattr(node, name)):
        seconds = getattr(node, setting)
        if waited >= seconds - 0.05:
            return errors.find_timeout_error(node, what, seconds, setting)
    return errors.abort_error(node, what)


def to_json(ds: "Dataset") -> dict:
    """PS3.18 F.2 DICOM JSON: the values in Unicode, Specific Character Set still the response's own.

    The JSON text is UTF-8 whatever (0008,0005) says; keeping the source's term
    (DICOM CP 2518) lets a context read from the file choose the same character
    set for its objects as one read from the C-FIND response itself."""
    out = ds.copy()
    out.decode()  # with the response's own Specific Character Set
    return out.to_json_dict()
