"""Opening associations: node settings, TLS, TCP_NODELAY, and failures turned into ``NetworkError``.

Every association the kiosk requests goes through ``associate``; every socket
(requested or accepted) gets TCP_NODELAY, because without it each DIMSE
exchange waits for the peer's delayed ACK (~40 ms on Linux loopback).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

from kiosk import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from kiosk.config import LocalConfig, NodeConfig
from kiosk.net import errors, reactor

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.presentation import PresentationContext

log = logging.getLogger(__name__)

# Kernel socket buffers for big C-STOREs: large enough to keep a 26 MB image
# streaming without the sender stalling on every PDU.
SOCKET_BUFFER = 4 * 1024 * 1024
QUICKACK = getattr(socket, "TCP_QUICKACK", 12)  # Linux only; elsewhere setsockopt fails harmlessly


def tune_socket(sock: socket.socket) -> None:
    """TCP_NODELAY and large buffers: small exchanges go out at once, big ones stream."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    except OSError as exc:  # e.g. a socket already closed by the peer
        log.debug("cannot set socket options: %s", exc)


def quick_ack(sock: socket.socket) -> None:
    """ACK the peer's next segments at once (Linux TCP_QUICKACK; the kernel clears it again by itself).

    Peers without TCP_NODELAY (Debian's DCMTK) send a response in two writes
    and hold the second until the first is acknowledged; our delayed ACK would
    then cost ~40 ms per response. Set after each request we send.
    """
    try:
        sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
    except (OSError, AttributeError):
        pass


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


def _socket_class():
    from pynetdicom import evt
    from pynetdicom.transport import AssociationSocket

    class TunedSocket(AssociationSocket):
        """pynetdicom's socket with our options, remembering why a connection failed."""

        connect_error: BaseException | None = None

        def _create_socket(self, address):  # noqa: ANN001 - pynetdicom's signature
            sock = super()._create_socket(address)
            tune_socket(sock)
            return sock

        def connect(self, primitive) -> None:  # noqa: ANN001
            # pynetdicom's connect, keeping the exception it would only log.
            try:
                if self.tls_args:
                    context, server_hostname = self.tls_args
                    self.socket = context.wrap_socket(self.socket, server_side=False, server_hostname=server_hostname)
                self.socket.settimeout(self.assoc.connection_timeout)
                self.socket.connect(primitive.address_info.as_tuple)
                self.socket.settimeout(self.assoc.network_timeout)
                from pynetdicom.transport import AddressInformation

                self.assoc.requestor.address_info = AddressInformation.from_tuple(self.socket.getsockname())
                self._is_connected = True
                evt.trigger(self.assoc, evt.EVT_CONN_OPEN, {"address": primitive.address_info.as_tuple})
                primitive.result = "Evt2"
                self.provider_queue.put(primitive)
            except OSError as exc:
                self.connect_error = exc
                if self.socket:
                    self._shutdown_socket()
                    self.socket = None
                primitive.result = "Evt17"
                self.provider_queue.put(primitive)
            finally:
                self._ready.set()

        def send(self, bytestream: bytes) -> None:
            # One sendall instead of pynetdicom's loop that copies the rest on every partial send.
            try:
                self.socket.sendall(bytestream)
                quick_ack(self.socket)
            except (OSError, AttributeError):
                self.event_queue.put("Evt17")

    return TunedSocket


def _keep_responses_from_reactor(assoc) -> None:  # noqa: ANN001 - a pynetdicom Association
    """Stop the association's reactor thread from taking a response meant for a waiting ``send_*``.

    pynetdicom pauses its reactor around each request, but the pause has a
    window: the reactor can pass its checkpoint just before it is closed and
    then take the next message off the queue. With fast peers the response
    is already there and is lost (the request then times out). The reactor
    only serves requests, so it is shown only those.
    """
    dimse = assoc.dimse
    original = dimse.get_msg

    def get_msg(block: bool = False):
        if not block and threading.current_thread() is assoc:
            _, message = dimse.peek_msg()
            if message is not None and getattr(message, "MessageIDBeingRespondedTo", None) is not None:
                return None, None
        return original(block)

    dimse.get_msg = get_msg


def make_ae(local: LocalConfig, node: NodeConfig | None = None) -> Any:
    """A pynetdicom AE with our AE title, the node's timeouts and tuned sockets."""
    from pynetdicom import AE

    socket_class = _socket_class()

    class KioskAE(AE):
        last_socket = None

        def _create_socket(self, assoc, address, tls_args):  # noqa: ANN001
            reactor.install(assoc)
            _keep_responses_from_reactor(assoc)
            sock = socket_class(assoc, address=address)
            sock.tls_args = tls_args
            self.last_socket = sock
            return sock

    ae = KioskAE(ae_title=local.ae_title)
    # Our identity in every A-ASSOCIATE-RQ/AC, not pynetdicom's (the conformance statement is ours).
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    if node is not None:
        ae.connection_timeout = node.connect_timeout
        ae.acse_timeout = node.acse_timeout
        ae.dimse_timeout = node.dimse_timeout
        ae.network_timeout = node.network_timeout
    return ae


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
    tls_args = (tls_context(node), node.host) if node.tls else None
    started = time.monotonic()
    assoc = ae.associate(address, node.port, contexts=list(contexts), ae_title=node.ae_title,
                         max_pdu=node.max_pdu, tls_args=tls_args, evt_handlers=list(handlers),
                         ext_neg=list(ext_neg) or None)
    if assoc.is_established:
        if not assoc.accepted_contexts:
            assoc.release()
            raise errors.no_context_error(node, what or "this service")
        return assoc
    sock = ae.last_socket
    if sock is not None and sock.connect_error is not None:
        raise errors.connection_error(node, sock.connect_error)
    answer = _peer_answer(assoc)
    if answer is not None and answer.result in (0x01, 0x02):
        raise errors.reject_error(node, local.ae_title, answer.result, answer.result_source, answer.diagnostic)
    if answer is not None and answer.result == 0x00:
        # Accepted, but with every presentation context refused: pynetdicom aborts at once.
        raise errors.no_context_error(node, what or "this service")
    if time.monotonic() - started >= node.acse_timeout - 0.05:
        raise errors.timeout_error(node, "association set-up", node.acse_timeout)
    if node.tls:
        # Under TLS 1.3 a refused client certificate only shows after the handshake, as a closed connection.
        raise errors.NetworkError(
            f"{node} closed the TLS connection during association set-up",
            "the peer may require a client certificate (tls.cert, tls.key) from a CA it trusts, or refuse ours; see its log",
            node=node, transient=False)
    raise errors.abort_error(node, "association set-up")


def _peer_answer(assoc: "Association") -> Any:
    """The peer's A-ASSOCIATE answer (accept or reject), or None if it sent none.

    pynetdicom gives up without reading the answer when the peer has already
    closed the connection by the time the requesting thread looks (a peer
    that rejects and hangs up at once, on a busy machine); the answer is then
    still waiting in the DUL's queue.
    """
    from pynetdicom.pdu_primitives import A_ASSOCIATE

    answer = getattr(assoc.acceptor, "primitive", None) or assoc.dul.peek_next_pdu()
    return answer if isinstance(answer, A_ASSOCIATE) else None


def release(assoc: "Association") -> None:
    """Release politely; an association the peer already closed needs nothing."""
    if assoc.is_established:
        assoc.release()
