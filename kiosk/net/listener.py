"""Our SCP on ``[local] port``: answers C-ECHO and takes storage commitment reports.

Only configured nodes may associate: the calling AE title must belong to a
configured node and the connection must come from that node's host; anyone
else gets A-ASSOCIATE-RJ "calling AE title not recognised" (permanent, service
user). On the fast path connections are read by ``fastpath.guard`` before
pynetdicom sees them and pynetdicom's own calling-AE check is made per host;
off it, an EVT_REQUESTED handler sends the same rejection. A
commitment report is matched to its waiting request by Transaction UID and
taken only from the node the request went to (AE title and host).

With ``[local.tls]`` the port speaks TLS only (``listener_tls``): each
connection's handshake is made on its own thread before any association
exists, on the fast path by the guard, off it in an EVT_CONN_OPEN handler
(pynetdicom calls it before the association starts). The allow-list applies
inside TLS as without it. TLS failures and rejections are security alerts
(``alerts``): logged, recorded in the audit trail, and passed to ``on_security_alert``.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

from kiosk.config import Config, LocalConfig, NodeConfig
from kiosk.net import errors, fastpath, listener_tls
from kiosk.net.alerts import ASSOCIATION_REJECTED, Alerts, SecurityAlert
from kiosk.net.nodes import make_ae

log = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
MAX_PDU = 16382  # the maximum PDU we advertise (pynetdicom's default), and so the longest we read
PROCESSING_FAILURE = 0x0110


@dataclass
class Report:
    """One storage commitment result: committed instance UIDs and failed ones with their reason."""

    committed: set[str] = field(default_factory=set)
    failed: dict[str, int] = field(default_factory=dict)


class PendingReport:
    """A transaction waiting for its N-EVENT-REPORT from ``node``, the node asked."""

    def __init__(self, transaction_uid: str, node: NodeConfig) -> None:
        self.transaction_uid = transaction_uid
        self.node = node
        self.addresses = _addresses(node.host)
        self.report: Report | None = None
        self._done = threading.Event()
        self._answering: threading.Thread | None = None

    def sent_by(self, ae_title: str, address: str) -> bool:
        """Whether a report from ``ae_title`` at ``address`` comes from the node asked."""
        return ae_title.strip() == self.node.ae_title and address in self.addresses

    def deliver(self, report: Report) -> None:
        """Called from the event handler, before its N-EVENT-REPORT-RSP is sent."""
        self._answering = threading.current_thread()
        self.report = report
        self._done.set()

    def wait(self, timeout: float) -> Report | None:
        self._done.wait(timeout)
        return self.report

    def wait_answered(self, timeout: float) -> None:
        """Wait until the handler that delivered the report has sent its response.

        pynetdicom answers an N-EVENT-REPORT in a thread of its own; releasing
        the association before that thread has queued the response puts the
        response after our A-RELEASE-RQ, which the state machine refuses
        (Evt9 in Sta7) and the association then hangs until its timeouts.
        """
        answering = self._answering
        if answering is not None and answering is not threading.current_thread():
            answering.join(timeout)


def parse_report(event_type: int, info: Any) -> Report:
    """Committed and failed instances from an N-EVENT-REPORT's Event Information (PS3.4 J.3.3).

    Raises ``ValueError`` naming what is wrong with a malformed one.
    """
    if event_type not in (1, 2):
        raise ValueError(f"event type {event_type} (1: all committed, 2: failures exist)")
    report = Report()
    for item in info.get("ReferencedSOPSequence", []) or []:
        report.committed.add(_instance_uid(item))
    for item in info.get("FailedSOPSequence", []) or []:
        try:
            reason = int(item.get("FailureReason", PROCESSING_FAILURE))
        except (TypeError, ValueError):
            raise ValueError("a Failure Reason that is not a number") from None
        report.failed[_instance_uid(item)] = reason
    if not report.committed and not report.failed:
        raise ValueError("no Referenced SOP Sequence or Failed SOP Sequence items")
    return report


def _instance_uid(item: Any) -> str:
    uid = str(item.get("ReferencedSOPInstanceUID", "") or "")
    if not uid:
        raise ValueError("an item without Referenced SOP Instance UID")
    return uid


class Reports:
    """Transaction UID -> pending request; reports that arrive unasked are logged and dropped."""

    def __init__(self) -> None:
        self._pending: dict[str, PendingReport] = {}
        self._lock = threading.Lock()

    def expect(self, transaction_uid: str, node: NodeConfig) -> PendingReport:
        """Wait for the report of ``transaction_uid``, to be accepted from ``node`` only."""
        pending = PendingReport(transaction_uid, node)
        with self._lock:
            self._pending[transaction_uid] = pending
        return pending

    def forget(self, transaction_uid: str) -> None:
        with self._lock:
            self._pending.pop(transaction_uid, None)

    def handle_event_report(self, event) -> tuple[int, None]:  # noqa: ANN001 - pynetdicom Event
        """EVT_N_EVENT_REPORT handler; Orthanc needs a (status, dataset) tuple back.

        A report from another node, or a malformed one, leaves the transaction waiting.
        """
        request = event.request
        if str(request.AffectedSOPClassUID) != STORAGE_COMMITMENT:
            return 0x0112, None  # No such SOP Instance
        info = event.event_information
        uid = str(info.get("TransactionUID", ""))
        peer = event.assoc.remote  # the other side, whichever of us asked for the association
        sender = f"{peer['ae_title']} at {peer['address']}"
        with self._lock:
            pending = self._pending.get(uid)
        if pending is None:
            log.warning("storage commitment report for unknown transaction %s from %s ignored", uid, sender)
            return 0x0000, None
        if not pending.sent_by(peer["ae_title"], peer["address"]):
            log.warning("storage commitment report for transaction %s from %s ignored: the request went to %s",
                        uid, sender, pending.node)
            return PROCESSING_FAILURE, None
        try:
            report = parse_report(int(request.EventTypeID or 0), info)
        except ValueError as exc:
            log.warning("malformed storage commitment report for %s from %s ignored (%s); still waiting for a "
                        "valid one", uid, sender, exc)
            return PROCESSING_FAILURE, None
        with self._lock:
            if self._pending.pop(uid, None) is not pending:
                return 0x0000, None  # answered meanwhile by another report
        log.info("storage commitment report for %s: %d committed, %d failed", uid, len(report.committed), len(report.failed))
        pending.deliver(report)
        return 0x0000, None


def _addresses(host: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        log.warning("cannot resolve %s; associations from it will be rejected", host)
        return set()


def configured_nodes(config: Config) -> list[NodeConfig]:
    """DICOM destinations, worklist and query server: the nodes allowed to associate with us."""
    dicom = [n for n in config.destinations.values() if not n.stow_url]  # a STOW-RS archive never calls us
    return [*dicom, *(n for n in (config.worklist, config.query) if n is not None)]


class Listener:
    """The kiosk's SCP. Use as a context manager or ``start()``/``stop()``.

    ``Listener.running(port)`` finds one already started in this process, so a
    commitment request can share the UI's or the outbox service's listener.
    """

    _running: dict[int, "Listener"] = {}
    _running_lock = threading.Lock()

    @classmethod
    def running(cls, port: int) -> "Listener | None":
        with cls._running_lock:
            return cls._running.get(port)

    def __init__(self, local: LocalConfig, allowed: Iterable[NodeConfig], *, port: int | None = None,
                 bind: str = "", on_security_alert: SecurityAlert | None = None) -> None:
        self.local = local
        self.port = local.port if port is None else port
        self.bind = bind
        self.reports = Reports()
        self._allowed: dict[str, set[str]] = {}
        for node in allowed:
            self._allowed.setdefault(node.ae_title, set()).update(_addresses(node.host))
        self._alerts = Alerts(on_security_alert)
        self._server = None

    @classmethod
    def from_config(cls, config: Config, *, port: int | None = None,
                    on_security_alert: SecurityAlert | None = None) -> "Listener":
        """A listener on ``[local] port`` (or ``port``) accepting every configured node (not started)."""
        return cls(config.local, configured_nodes(config), port=port, on_security_alert=on_security_alert)

    @property
    def on_security_alert(self) -> SecurityAlert | None:
        """Called as ``hook(kind, host, detail)`` for each TLS failure and rejection (see ``kiosk.net.alerts``)."""
        return self._alerts.hook

    @on_security_alert.setter
    def on_security_alert(self, hook: SecurityAlert | None) -> None:
        self._alerts.hook = hook

    @property
    def tls(self) -> str:
        """How the listener uses TLS ('with TLS 1.2+ (...)'), '' without ``[local.tls]``."""
        return listener_tls.describe(self.local.tls) if self.local.tls else ""

    def allows(self, calling_aet: str, address: str) -> bool:
        return address in self._allowed.get(calling_aet.strip(), set())

    def knows(self, address: str) -> bool:
        """Whether ``address`` is a configured node's host."""
        return any(address in addresses for addresses in self._allowed.values())

    def allow(self, node: NodeConfig) -> None:
        """Also accept ``node`` (e.g. an ``AET@host:port`` destination that will send a commitment report)."""
        addresses = _addresses(node.host)
        with Listener._running_lock:
            self._allowed = {**self._allowed, node.ae_title: self._allowed.get(node.ae_title, set()) | addresses}

    @property
    def allowed_titles(self) -> list[str]:
        """The calling AE titles accepted (each from its node's host only)."""
        return sorted(self._allowed)

    def titles_from(self, address: str) -> list[str]:
        """The calling AE titles accepted from ``address``."""
        return [aet for aet in self._allowed if self.allows(aet, address)]

    def _refuse_strangers(self, event) -> None:  # noqa: ANN001 - pynetdicom Event
        """EVT_REQUESTED handler off the fast path: reject as pynetdicom's calling-AE check would.

        pynetdicom skips its negotiation once a handler has rejected; like its
        own rejection, this one ends the association's DUL thread.
        """
        assoc = event.assoc
        if self.allows(assoc.requestor.primitive.calling_ae_title, assoc.requestor.address):
            return
        assoc.acse.send_reject(0x01, 0x01, 0x03)  # rejected-permanent, service user, calling AE title not recognised
        self._log_rejection(event)
        assoc.kill()

    def _log_rejection(self, event) -> None:  # noqa: ANN001 - pynetdicom Event
        rejection = event.assoc.acceptor.primitive
        key = (rejection.result_source, rejection.diagnostic)
        meaning = errors.REJECT_REASONS.get(key, (f"source {key[0]}, reason {key[1]}",))[0]
        reason = "not a configured node" if key == (1, 3) else meaning
        calling, address = event.assoc.requestor.primitive.calling_ae_title, event.assoc.requestor.address
        log.warning("rejected an association from %s at %s: %s", calling, address, reason)
        self._alerts.notify(ASSOCIATION_REJECTED, address, f"calling AE title {calling}: {reason}")

    def _tls_handshake(self, event) -> None:  # noqa: ANN001 - pynetdicom Event
        """EVT_CONN_OPEN handler off the fast path: the handshake, before pynetdicom starts the association.

        A failed one closes the connection and ends the association as soon as it starts: it would
        otherwise wait its ACSE timeout for a request, counting towards the association limit.
        """
        sock = event.assoc.dul.socket
        try:
            listener_tls.handshake(sock.socket, listener_tls.HANDSHAKE_TIMEOUT)
        except listener_tls.HandshakeFailed as exc:
            self._alerts.tls_failure(event.assoc.requestor.address, str(exc))
            sock.close()
            event.assoc.acse_timeout = 0

    def start(self) -> "Listener":
        from pynetdicom import evt

        ae = make_ae(self.local)
        ae.maximum_pdu_size = MAX_PDU
        ae.add_supported_context(VERIFICATION)
        ae.add_supported_context(STORAGE_COMMITMENT, scu_role=True, scp_role=True)
        handlers = [
            (evt.EVT_C_ECHO, lambda event: 0x0000),
            (evt.EVT_N_EVENT_REPORT, self.reports.handle_event_report),
            (evt.EVT_REJECTED, self._log_rejection),
        ]
        address = (self.bind, self.port)
        tls = listener_tls.server_context(self.local.tls) if self.local.tls else None
        try:
            if fastpath.enabled():
                self._server = fastpath.serve(ae, address, handlers, titles_from=self.titles_from, knows=self.knows,
                                              tls=tls, on_tls_failure=self._alerts.tls_failure)
            else:
                stock = [*handlers, (evt.EVT_REQUESTED, self._refuse_strangers)]
                if tls is not None:
                    stock.append((evt.EVT_CONN_OPEN, self._tls_handshake))
                self._server = ae.start_server(address, block=False, evt_handlers=stock,
                                               ssl_context=tls)
        except OSError as exc:
            raise errors.NetworkError(
                f"cannot listen on port {self.port} ({exc.strerror or exc})",
                "another program (or another kiosk) uses that port; stop it or change [local] port",
                transient=False) from None
        self.port = self._server.server_address[1]
        with Listener._running_lock:
            Listener._running[self.port] = self
        log.info("listening as %s on port %d%s", self.local.ae_title, self.port, f" {self.tls}" if self.tls else "")
        return self

    def stop(self) -> None:
        if self._server is not None:
            with Listener._running_lock:
                Listener._running.pop(self.port, None)
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> "Listener":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
