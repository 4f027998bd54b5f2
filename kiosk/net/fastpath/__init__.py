"""The fast path: every use of pynetdicom internals, behind ``[network] fast_path`` (default true).

What each part buys (docs/networking.md, "The fast path"):

- ``reactor``: an event-driven DUL thread instead of pynetdicom's 1 ms polling
  loop (no CPU while idle, no added latency per exchange; an event the state
  machine refuses aborts the association instead of ending the thread silently);
- ``pdata``: C-STORE of files with the PDUs packed around data read straight
  from the file (about twice pynetdicom's throughput, a fraction of its cost
  per small image), and files sent as they are (``STORE_SEND_CHUNKED_DATASET``);
- ``sockets``: TCP_NODELAY, 4 MB buffers and quick ACKs (~40 ms less per
  exchange), the reason a connection failed, and the fix for pynetdicom's
  race that can lose a response to its reactor thread;
- ``guard``: our listener reads each connection's A-ASSOCIATE-RQ before
  pynetdicom (silent or garbage connections cannot take association slots,
  no PDU longer than advertised is read) and checks the calling AE title
  per connecting host inside pynetdicom's own check.

With the fast path off the kiosk uses stock pynetdicom through its public API
only; ``kiosk.net`` keeps the same behaviour where correctness needs it (the
allow-list, error messages, timeouts). Nothing outside this package may use
pynetdicom's private names (tests/core/test_fastpath_boundary.py).
"""

from __future__ import annotations

import functools
import logging
import os
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    import ssl

    from kiosk.config import Config
    from kiosk.net.fastpath.pdata import FileSender

log = logging.getLogger(__name__)

#: Overrides ``[network] fast_path`` for one process (and the processes it starts): "true" or "false".
ENV_VAR = "KIOSK_FAST_PATH"
_BOOLEANS = {"true": True, "false": False}

_enabled = True


def enable(flag: bool) -> None:
    """Use the fast path (True) or stock pynetdicom (False) for associations made from now on in this process."""
    global _enabled
    _enabled = bool(flag)


def enabled() -> bool:
    return _enabled


def env_override() -> bool | None:
    """``$KIOSK_FAST_PATH`` as a bool, None when unset; ``UsageError`` when it is neither true nor false."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return None
    if value not in _BOOLEANS:
        from kiosk.errors import UsageError

        raise UsageError(f"{ENV_VAR} is {os.environ[ENV_VAR]!r}",
                         "set it to true or false, or unset it to use [network] fast_path")
    return _BOOLEANS[value]


def apply(config: "Config") -> None:
    """Take the configuration's ``[network] fast_path`` into effect for this process (``$KIOSK_FAST_PATH`` wins)."""
    override = env_override()
    configured = config.network.fast_path
    enable(configured if override is None else override)
    if not _enabled:
        log.info("networking on stock pynetdicom (fast path off by %s)",
                 ENV_VAR if override is not None else "[network] fast_path = false")


def make_ae(ae_title: str) -> Any:
    """A pynetdicom AE; on the fast path its associations get tuned sockets and the event-driven reactor."""
    if not _enabled:
        from pynetdicom import AE

        return AE(ae_title=ae_title)
    return _fast_ae_class()(ae_title=ae_title)


@functools.cache
def _fast_ae_class() -> type:
    from pynetdicom import AE

    from kiosk.net.fastpath import reactor, sockets

    class KioskAE(AE):
        last_socket = None

        def _create_socket(self, assoc, address, tls_args):  # noqa: ANN001 - pynetdicom's signature
            reactor.install(assoc)
            sockets.keep_responses_from_reactor(assoc)
            sock = sockets.socket_class()(assoc, address=address)
            sock.tls_args = tls_args
            self.last_socket = sock
            return sock

    return KioskAE


def connect_error(ae: Any) -> BaseException | None:
    """Why ``ae``'s last connection failed, when the fast path saw it (None otherwise)."""
    sock = getattr(ae, "last_socket", None)
    return getattr(sock, "connect_error", None)


def prepare_store() -> None:
    """Before C-STOREs: on the fast path pynetdicom sends files unchanged; off it, it decodes and re-encodes them."""
    from pynetdicom import _config

    _config.STORE_SEND_CHUNKED_DATASET = _enabled


def file_sender(assoc: Any) -> "FileSender | None":
    """The fast sender of files for ``assoc``; None off the fast path and under TLS (pynetdicom sends then)."""
    if not _enabled:
        return None
    from kiosk.net.fastpath.pdata import FileSender

    return FileSender.for_association(assoc)


def serve(ae: Any, address: tuple[str, int], handlers: Sequence[tuple], *,
          titles_from: Callable[[str], list[str]], knows: Callable[[str], bool],
          tls: "ssl.SSLContext | None" = None, on_tls_failure: Callable[[str, str], None] = lambda host, why: None,
          ) -> Any:
    """Start ``ae``'s guarded server on ``address`` in a thread of its own; returns the server.

    Each connection is read by a ``guard.Doorkeeper`` first (``knows(address)``:
    a configured node's host), after its TLS handshake with ``tls`` if given
    (``on_tls_failure(host, reason)`` when it fails); pynetdicom's calling-AE
    check then accepts only ``titles_from(address)`` for the connecting host
    and rejects the others itself. Raises ``OSError`` when the address cannot be bound.
    """
    import threading

    from pynetdicom import evt
    from pynetdicom.association import Association

    from kiosk.net.fastpath import guard, sockets

    class AllowList(list):
        """pynetdicom's calling-AE check (it iterates the list), made per connection."""

        def __bool__(self) -> bool:
            return True

        def __iter__(self):
            assoc = threading.current_thread()
            return iter(titles_from(assoc.requestor.address) if isinstance(assoc, Association) else [])

    ae._require_calling_aet = AllowList()
    server = ae.make_server(address, evt_handlers=[*handlers, (evt.EVT_CONN_OPEN, sockets.tune_accepted)],
                            server_class=guard.server_class(), doorkeeper=guard.Doorkeeper(knows, tls=tls),
                            on_tls_failure=on_tls_failure)
    # What ae.start_server(block=False) does, for the guarded server.
    threading.Thread(target=server.serve_forever, name=f"KioskListener@{server.server_address[1]}",
                     daemon=True).start()
    ae._servers.append(server)
    return server
