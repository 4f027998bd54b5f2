"""Opening associations: node settings, TLS, and failures turned into ``NetworkError``.

Every association the kiosk requests goes through ``associate``, on the fast
path (``kiosk.net.fastpath``) or stock pynetdicom, with the same errors.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import TYPE_CHECKING, Any, Sequence

from kiosk import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from kiosk.audit import events, trail
from kiosk.audit.codes import NODE_AUTHENTICATION, Outcome
from kiosk.config import LocalConfig, NodeConfig
from kiosk.net import errors, fastpath

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.presentation import PresentationContext

ASSOCIATE_AC, ASSOCIATE_RJ = 0x02, 0x03  # PDU types (PS3.8 9.3.1)


def tls_context(node: NodeConfig) -> ssl.SSLContext:
    """A client context: TLS 1.2 or later, the server's certificate and host name verified."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=node.tls.ca or None)
    except (ssl.SSLError, OSError) as exc:
        raise errors.NetworkError(
            f"cannot use the CA file {node.tls.ca} for {node}: {getattr(exc, 'reason', None) or exc}",
            "tls.ca must name PEM CA certificates (-----BEGIN CERTIFICATE-----); check it with 'kiosk config check'",
            node=node, transient=False) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if node.tls.cert:
        try:
            # A key with a passphrase would make OpenSSL prompt on the terminal; the kiosk has none to give.
            context.load_cert_chain(node.tls.cert, node.tls.key or None, password=lambda: b"")
        except (ssl.SSLError, OSError) as exc:
            raise errors.NetworkError(
                f"cannot use the client certificate {node.tls.cert} for {node}: {exc}",
                "check that cert and key are PEM files that belong together", node=node, transient=False) from None
    return context


def calling_ae_title(local: LocalConfig, node: NodeConfig | None) -> str:
    """The AE title we call ``node`` with: some PACS route by it, so a destination may have its own."""
    return (node.calling_ae_title if node is not None else "") or local.ae_title


def make_ae(local: LocalConfig, node: NodeConfig | None = None) -> Any:
    """A pynetdicom AE with our AE title towards ``node`` (its ``calling_ae_title``, else ours), our identity
    and the node's timeouts (tuned on the fast path)."""
    ae = fastpath.make_ae(calling_ae_title(local, node))
    # Our identity in every A-ASSOCIATE-RQ/AC, not pynetdicom's (the conformance statement is ours).
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    if node is not None:
        ae.connection_timeout = node.connect_timeout
        ae.acse_timeout = node.acse_timeout
        ae.dimse_timeout = node.dimse_timeout
        ae.network_timeout = node.network_timeout
    return ae


class _SetUp:
    """What an association set-up showed through pynetdicom's events: the connection opened, the peer's answer.

    pynetdicom gives up without reading the answer when the peer has already
    closed the connection by the time the requesting thread looks (a peer
    that rejects and hangs up at once, on a busy machine); the DUL thread
    has received it all the same, and EVT_PDU_RECV shows it here.
    """

    def __init__(self) -> None:
        self.opened = False
        self.answer: Any = None  # the A-ASSOCIATE primitive of the peer's A-ASSOCIATE-AC or -RJ

    def handlers(self) -> list[tuple]:
        from pynetdicom import evt

        return [(evt.EVT_CONN_OPEN, self._opened), (evt.EVT_PDU_RECV, self._received)]

    def _opened(self, _event: Any) -> None:
        self.opened = True

    def _received(self, event: Any) -> None:
        if self.answer is None and event.pdu.pdu_type in (ASSOCIATE_AC, ASSOCIATE_RJ):
            self.answer = event.pdu.to_primitive()

    def detach(self, assoc: "Association") -> None:
        """Stop watching: the rest of the association's PDUs need no look."""
        from pynetdicom import evt

        assoc.unbind(evt.EVT_PDU_RECV, self._received)


def _connect_failure(node: NodeConfig, address: str, context: ssl.SSLContext | None) -> BaseException | None:
    """Why a connection to the node cannot be opened, found by opening one (stock pynetdicom only logs why)."""
    try:
        with socket.create_connection((address, node.port), timeout=node.connect_timeout) as sock:
            if context is not None:
                context.wrap_socket(sock, server_hostname=node.host).close()
    except OSError as exc:
        return exc
    return None


def resolve(node: NodeConfig) -> str:
    """The node's IP address, or a ``NetworkError`` naming the DNS problem."""
    try:
        infos = socket.getaddrinfo(node.host, node.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise errors.dns_error(node, exc) from None
    ipv4 = [info for info in infos if info[0] == socket.AF_INET]
    return (ipv4 or infos)[0][4][0]


def associate(node: NodeConfig, local: LocalConfig, contexts: Sequence["PresentationContext"], *,
              handlers: Sequence[tuple] = (), ext_neg: Sequence[Any] = (), what: str = "") -> "Association":
    """Open an association to ``node`` proposing ``contexts``; raise ``NetworkError`` unless established.

    ``what`` names the service for the message when the peer accepts no context.
    """
    address = resolve(node)
    ae = make_ae(local, node)
    context = tls_context(node) if node.tls else None
    set_up = _SetUp()
    started = time.monotonic()
    assoc = ae.associate(address, node.port, contexts=list(contexts), ae_title=node.ae_title,
                         max_pdu=node.max_pdu, tls_args=(context, node.host) if context else None,
                         evt_handlers=[*handlers, *set_up.handlers()], ext_neg=list(ext_neg) or None)
    set_up.detach(assoc)
    if assoc.is_established:
        if not assoc.accepted_contexts:
            assoc.release()
            raise errors.no_context_error(node, what or "this service")
        return assoc
    if not set_up.opened:
        failure = fastpath.connect_error(ae)
        if failure is None and time.monotonic() - started >= node.connect_timeout - 0.05:
            failure = TimeoutError()
        failure = failure or _connect_failure(node, address, context)
        if failure is not None:
            if isinstance(failure, ssl.SSLError):
                _audit_tls_failure(node, getattr(failure, "verify_message", None) or failure.reason or str(failure))
            raise errors.connection_error(node, failure)
    answer = set_up.answer
    if answer is not None and answer.result in (0x01, 0x02):
        raise errors.reject_error(node, calling_ae_title(local, node), answer.result, answer.result_source, answer.diagnostic)
    if answer is not None and answer.result == 0x00:
        # Accepted, but with every presentation context refused: pynetdicom aborts at once.
        raise errors.no_context_error(node, what or "this service")
    if time.monotonic() - started >= node.acse_timeout - 0.05:
        raise errors.timeout_error(node, "association set-up", node.acse_timeout)
    if node.tls:
        # Under TLS 1.3 a refused client certificate only shows after the handshake, as a closed connection.
        _audit_tls_failure(node, "the peer closed the TLS connection during association set-up")
        raise errors.NetworkError(
            f"{node} closed the TLS connection during association set-up",
            "the peer may require a client certificate (tls.cert, tls.key) from a CA it trusts, or refuse ours; see its log",
            node=node, transient=False)
    raise errors.abort_error(node, "association set-up")


def _audit_tls_failure(node: NodeConfig, reason: str) -> None:
    """A Security Alert (node authentication): TLS with ``node`` failed."""
    trail.record(events.security_alert(trail.application(), NODE_AUTHENTICATION, f"{node.ae_title}@{node.host}",
                                       f"TLS with {node} failed: {reason}", Outcome.SERIOUS_FAILURE, trail.peer(node),
                                       trail.operator()))


def release(assoc: "Association") -> None:
    """Release politely; an association the peer already closed needs nothing."""
    if assoc.is_established:
        assoc.release()
