"""Our listener's front door: what it reads off the wire before and after pynetdicom takes a connection.

pynetdicom reads a PDU of whatever length its header claims (a header
claiming 4 GB, then streamed bytes, grows the process by as much), and each
accepted connection waits up to the ACSE timeout for its A-ASSOCIATE-RQ while
counting towards the association limit, so a few silent or garbage
connections lock the real peers out. Here each connection is read first, on
its own thread and before any association exists: its first PDU must be an
A-ASSOCIATE-RQ of at most ``MAX_ASSOCIATE_RQ`` bytes that arrives whole
within ``REQUEST_TIMEOUT`` seconds and decodes; anything else is dropped at
the first wrong byte. At most ``MAX_WAITING`` connections wait for their
request at a time; beyond that the oldest one from a host that is no
configured node's is dropped (a configured node's only when all waiting are).
Once pynetdicom has the request, no PDU longer than the maximum we
advertised is read. With TLS (``[local.tls]``) the handshake is made first,
within the same deadline and counted among the waiting connections; the
A-ASSOCIATE-RQ is then read from the decrypted stream.
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl
import struct
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from kiosk.audit import trail
from kiosk.net import listener_tls
from kiosk.net.alerts import RateLimitedLog

log = logging.getLogger(__name__)

# A real A-ASSOCIATE-RQ is a few KB (128 presentation contexts with a few transfer syntaxes each: ~20 KB).
MAX_ASSOCIATE_RQ = 64 * 1024
REQUEST_TIMEOUT = 5.0  # seconds from connecting to the whole A-ASSOCIATE-RQ
MAX_WAITING = 16  # connections waiting for their A-ASSOCIATE-RQ at a time
ASSOCIATE_RQ_TYPE = 0x01
MIN_ASSOCIATE_RQ = 74  # PS3.8 9.3.2: the fixed fields alone
DROPS_LOGGED = 20  # dropped connections logged one by one per DROP_WINDOW; a flood beyond is counted
DROP_WINDOW = 60.0  # seconds


class Refused(Exception):
    """Why a connection was dropped before association (for the log)."""


@dataclass(eq=False)
class _Waiting:
    sock: socket.socket
    trusted: bool
    dropped: bool = False


class DropLog(RateLimitedLog):
    """Logs dropped connections, at most ``budget`` lines per ``window`` seconds: a flood of them
    (a scanner, an attack) is summed up in one line at the next drop after the window, so it
    cannot fill the log file."""

    def __init__(self, budget: int = DROPS_LOGGED, window: float = DROP_WINDOW) -> None:
        super().__init__(log, "dropped a connection from %s: %s",
                         "%d more connection(s) were dropped in the last %.0f s (not logged one by one)",
                         budget=budget, window=window)

    def dropped(self, address: str, reason: object) -> None:
        if self.warn(address, reason):  # audited as logged: a flood must not flood the repository either
            trail.network_alert(address, f"connection dropped: {reason}")


class Doorkeeper:
    """Reads each connection's A-ASSOCIATE-RQ; ``trusted(address)`` tells a configured node's host.

    With ``tls`` each connection makes its TLS handshake first (``listener_tls.HandshakeFailed`` if it fails).
    """

    def __init__(self, trusted: Callable[[str], bool], *, tls: ssl.SSLContext | None = None,
                 limit: int = MAX_WAITING, timeout: float = REQUEST_TIMEOUT) -> None:
        self._trusted = trusted
        self._tls = tls
        self._limit = limit
        self._timeout = timeout
        self._waiting: list[_Waiting] = []
        self._lock = threading.Lock()

    def read_request(self, sock: socket.socket, address: str) -> tuple[socket.socket, bytes]:
        """The connection's socket (under TLS, the wrapped one) and its whole A-ASSOCIATE-RQ PDU.

        Raises ``Refused`` saying why not, or ``listener_tls.HandshakeFailed``.
        """
        if self._tls is None:
            return sock, self._read(sock, address)
        # No handshake yet (_read makes it); the wrapped socket owns the connection from here.
        sock = self._tls.wrap_socket(sock, server_side=True)
        try:
            return sock, self._read(sock, address)
        except BaseException:
            sock.close()
            raise

    def _read(self, sock: socket.socket, address: str) -> bytes:
        waiting = _Waiting(sock, self._trusted(address))
        self._enter(waiting)
        try:
            deadline = time.monotonic() + self._timeout
            if isinstance(sock, ssl.SSLSocket):
                try:
                    listener_tls.handshake(sock, deadline - time.monotonic())
                except listener_tls.HandshakeFailed:
                    if waiting.dropped:
                        raise Refused(f"more than {self._limit} connections were waiting to send an association "
                                      "request") from None
                    raise
            first = self._recv(waiting, 1, deadline)
            if first[0] != ASSOCIATE_RQ_TYPE:
                raise Refused(f"not a DICOM association request (first byte 0x{first[0]:02X}, "
                              f"an A-ASSOCIATE-RQ starts with 0x{ASSOCIATE_RQ_TYPE:02X})")
            header = first + self._recv(waiting, 5, deadline)
            (length,) = struct.unpack(">L", header[2:6])
            if not MIN_ASSOCIATE_RQ - 6 <= length <= MAX_ASSOCIATE_RQ - 6:
                raise Refused(f"announced a {length + 6}-byte association request "
                              f"(accepted: {MIN_ASSOCIATE_RQ} to {MAX_ASSOCIATE_RQ} bytes)")
            pdu = header + self._recv(waiting, length, deadline)
        finally:
            with self._lock:
                if waiting in self._waiting:
                    self._waiting.remove(waiting)
        _check_decodes(pdu)
        return pdu

    def _enter(self, waiting: _Waiting) -> None:
        with self._lock:
            self._waiting.append(waiting)
            if len(self._waiting) <= self._limit:
                return
            victim = next((w for w in self._waiting if not w.trusted), self._waiting[0])
            self._waiting.remove(victim)
            victim.dropped = True
        try:
            # Its reader sees end of stream and gives up. The plain socket's shutdown: an
            # SSLSocket's would drop its TLS state under the reading thread.
            socket.socket.shutdown(victim.sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def _recv(self, waiting: _Waiting, size: int, deadline: float) -> bytes:
        data = bytearray()
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Refused(f"sent no complete association request within {self._timeout:g} s")
            waiting.sock.settimeout(remaining)
            try:
                chunk = waiting.sock.recv(size - len(data))
            except TimeoutError:
                continue
            except OSError:
                chunk = b""  # reset by the peer, or shut down by _enter
            if not chunk:
                if waiting.dropped:
                    raise Refused(f"more than {self._limit} connections were waiting to send an association request")
                raise Refused("closed the connection before its association request was complete")
            data += chunk
        return bytes(data)


def _check_decodes(pdu: bytes) -> None:
    from pynetdicom.pdu import A_ASSOCIATE_RQ

    try:
        A_ASSOCIATE_RQ().decode(pdu)
    except Exception:  # noqa: BLE001 - pynetdicom's decoders raise many kinds; it catches Exception too
        raise Refused("sent an association request that cannot be decoded") from None


@functools.cache
def server_class() -> type:
    """pynetdicom's threaded server, with each connection read by a ``Doorkeeper`` first."""
    from pynetdicom import evt
    from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

    class GuardedHandler(RequestHandler):
        server: "GuardedServer"

        def handle(self) -> None:
            address = self.client_address[0]
            try:
                self.request, request = self.server.doorkeeper.read_request(self.request, address)
            except (Refused, listener_tls.HandshakeFailed) as exc:
                if isinstance(exc, Refused):
                    self.server.drops.dropped(address, exc)
                else:
                    self.server.on_tls_failure(address, str(exc))
                self.server.shutdown_request(self.request)
                return
            # As pynetdicom's requested sockets: a peer stalling inside a PDU cannot hold the reader forever.
            self.request.settimeout(self.ae.network_timeout)
            # pynetdicom's handle(), with the socket first serving the request already read.
            assoc = self._create_association()
            sock = assoc.dul.socket
            sock.__class__ = _bounded_socket_class()
            sock.unread = bytearray(request)
            evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
            assoc.start()

    class GuardedServer(ThreadedAssociationServer):
        # Room in the kernel's accept queue for a burst of connections, so a configured node's is not lost.
        request_queue_size = 64
        daemon_threads = True  # a connection still being read does not hold up the exit

        def __init__(self, *args: Any, doorkeeper: Doorkeeper, on_tls_failure: Callable[[str, str], None],
                     **kwargs: Any) -> None:
            self.doorkeeper = doorkeeper
            self.on_tls_failure = on_tls_failure
            self.drops = DropLog()
            super().__init__(*args, request_handler=GuardedHandler, **kwargs)

        def handle_error(self, request: Any, client_address: Any) -> None:
            # socketserver prints a traceback on stderr; a connection that fails ends alone, in the log.
            log.warning("the connection from %s ended in an error: %s", client_address[0], sys.exc_info()[1])
            log.debug("the connection from %s ended in an error", client_address[0], exc_info=True)

    return GuardedServer


@functools.cache
def _bounded_socket_class() -> type:
    from pynetdicom.transport import AssociationSocket

    class BoundedSocket(AssociationSocket):
        """An accepted socket: first the A-ASSOCIATE-RQ already read, then no PDU longer than we advertised."""

        unread: bytearray

        @property
        def ready(self) -> bool:
            return bool(self.unread) or super().ready

        def recv(self, nr_bytes: int) -> bytearray:
            # pynetdicom's DUL reads each PDU as recv(6) for the header, then recv(length) for the rest.
            if self.unread:
                data = self.unread[:nr_bytes]
                del self.unread[:nr_bytes]
                return data
            # None once we have rejected the association; a peer may still send (under TLS its
            # close_notify makes the socket readable), but nothing long is legitimate then.
            limit = self.assoc.acceptor.maximum_length or MAX_ASSOCIATE_RQ
            if nr_bytes > limit:
                log.warning("hung up on %s: it announced a PDU of %d bytes, more than the %d agreed",
                            self.assoc.requestor.address, nr_bytes, limit)
                self._shutdown_socket()
                return bytearray()  # too short: pynetdicom's DUL treats it as a closed connection
            return super().recv(nr_bytes)

    return BoundedSocket
