"""Tuned sockets for pynetdicom: TCP_NODELAY, large buffers, quick ACKs, one ``sendall``; the response race fix.

Without TCP_NODELAY each DIMSE exchange waits for the peer's delayed ACK
(~40 ms on Linux loopback); pynetdicom sets no socket options.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
from typing import Any

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


@functools.cache
def socket_class() -> type:
    """pynetdicom's requesting socket with our options, remembering why a connection failed."""
    from pynetdicom import evt
    from pynetdicom.transport import AddressInformation, AssociationSocket

    class TunedSocket(AssociationSocket):
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


def keep_responses_from_reactor(assoc: Any) -> None:
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


def tune_accepted(event: Any) -> None:
    """EVT_CONN_OPEN handler of our listener: the accepted socket tuned as a requested one."""
    tune_socket(event.assoc.dul.socket.socket)
