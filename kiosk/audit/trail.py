"""This process's audit trail: ``record`` a message, know the operator, run the sender.

``configure(config)`` (the ``kiosk`` command does it once the configuration is
loaded) says which kiosk this is and where messages go; before it, messages are
still kept, under the defaults. ``record`` writes the message to the local
queue and returns once it is on disk; it never raises: a failure is logged and
the capture goes on. The log names the event, never the patient.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from kiosk.audit import events, syslog
from kiosk.audit.codes import NODE_AUTHENTICATION, USE_OF_RESTRICTED_FUNCTION, Outcome
from kiosk.audit.events import Application, Peer
from kiosk.audit.messages import AuditMessage
from kiosk.audit.queue import AuditQueue, default_dir
from kiosk.audit.sender import Sender
from kiosk.config import AuditConfig, Config, LocalConfig, NodeConfig

log = logging.getLogger(__name__)

_lock = threading.RLock()
_state: dict = {"audit": AuditConfig(), "local": LocalConfig(), "folder": None, "queue": None, "sender": None,
                "operator": None, "users": 0}


def configure(config: Config, folder: Path | None = None) -> None:
    """Use ``config``'s [audit] and [local] from now on; ``folder`` for the queue (default: the user data dir)."""
    with _lock:
        sender = _state["sender"]
        restart = sender is not None and (config.audit != _state["audit"] or folder != _state["folder"])
        if restart:
            sender.stop()
        if _state["queue"] is not None and folder != _state["folder"]:
            _state["queue"].close()
            _state["queue"] = None
        _state.update(audit=config.audit, local=config.local, folder=folder)
        if restart:  # e.g. [audit] changed in Settings: the running sender takes the new repository
            _state["sender"] = None
            _start()


def application() -> Application:
    """This kiosk as an audit participant."""
    local = _state["local"]
    return Application(local.ae_title, local.station_name, site=local.institution_name)


def peer(node: NodeConfig) -> Peer:
    """A configured node as an audit participant (a DICOMweb one by its URL)."""
    return Peer(node.ae_title or node.stow_url, node.host)


def set_operator(user_id: str | None) -> None:
    """The person signed in at this kiosk (None: nobody); events record them as the requestor."""
    _state["operator"] = user_id or None


def operator() -> str | None:
    return _state["operator"]


def authenticated(user: str, login: bool = True, succeeded: bool = True, reason: str = "") -> None:
    """Record a sign-in (``login``) or sign-out of ``user`` (User Authentication); a successful sign-in makes
    them the operator of the events that follow, a sign-out ends that. ``reason``: why a sign-in was refused."""
    if succeeded:
        set_operator(user if login else None)
    record(events.user_authentication(application(), user, login, succeeded, reason))


def network_alert(host: str, detail: str) -> None:
    """A peer at ``host`` failed to authenticate as a node (``kiosk.net.alerts``: a rejected association,
    a failed TLS handshake, a connection dropped by the guard): Security Alert, Node Authentication."""
    record(events.security_alert(application(), NODE_AUTHENTICATION, host, detail, peer=events.Peer("", host)))


def barcode_override(pages: int, how: str) -> None:
    """``pages`` pages whose barcode names another patient or order were sent anyway (``how``: confirmed
    with the admin PIN, ``--ignore-barcode-mismatch``): Security Alert, Use of Restricted Function. The
    barcodes' values stay out of the message."""
    record(events.security_alert(application(), USE_OF_RESTRICTED_FUNCTION, "urn:kiosk:barcode-check",
                                 f"{pages} page(s) with a barcode of another patient or order sent anyway ({how})",
                                 Outcome.SUCCESS, operator=operator()))


def operator_event(event: Any) -> None:
    """A touch-UI sign-in event (``kiosk.operators.OperatorEvent``) as User Authentication: subscribe this
    to ``app.operator_events``."""
    from kiosk.operators import FAILED, SIGNED_IN

    if event.kind == FAILED:
        authenticated(event.name or "unknown badge", succeeded=False, reason=event.detail)
    else:
        authenticated(event.name, login=event.kind == SIGNED_IN, reason="" if event.kind == SIGNED_IN else event.detail)


def queue() -> AuditQueue:
    """The local queue (opened on first use)."""
    with _lock:
        if _state["queue"] is None:
            _state["queue"] = AuditQueue(_state["folder"] or default_dir())
        return _state["queue"]


def record(message: AuditMessage) -> int | None:
    """Keep ``message`` (durably) for the repository; its queue id, or None if it could not be kept (logged)."""
    try:
        app = application()
        data = syslog.frame(message.xml(), message.time, app.host, app.pid, bool(message.outcome))
        entry = queue().add(message.event_id.meaning, ", ".join(t.meaning for t in message.event_types),
                            int(message.outcome), message.summary(), data, message.time.timestamp())
    except Exception as exc:  # noqa: BLE001 - an audit failure must not stop a capture
        log.error("audit: the %s message could not be kept (%s: %s); the kiosk goes on", message.event_id.meaning,
                  type(exc).__name__, exc)
        return None
    sender = _state["sender"]
    if sender is not None:
        sender.wake()
    return entry


def start_sender() -> None:
    """Deliver the queue from this process (a long-running one) until ``stop_sender``; nested calls count."""
    with _lock:
        _state["users"] += 1
        if _state["sender"] is None:
            _start()


def _start() -> None:
    """Start this process's sender (under ``_lock``); a failure is logged, never raised."""
    try:
        _state["sender"] = Sender(queue(), _state["audit"]).start()
    except Exception as exc:  # noqa: BLE001 - the kiosk works on without sending its audit trail
        log.error("audit: the sender cannot start (%s: %s); messages stay in the local queue",
                  type(exc).__name__, exc)


def stop_sender() -> None:
    with _lock:
        _state["users"] = max(0, _state["users"] - 1)
        if _state["users"] == 0 and _state["sender"] is not None:
            _state["sender"].stop()
            _state["sender"] = None


def shutdown() -> None:
    """Stop this process's sender whoever started it (the end of the process; tests between apps)."""
    with _lock:
        _state["users"] = 0
        if _state["sender"] is not None:
            _state["sender"].stop()
            _state["sender"] = None


def sender() -> Sender:
    """A sender for one delivery pass (``kiosk audit send``)."""
    return Sender(queue(), _state["audit"])
