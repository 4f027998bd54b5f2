"""An event-driven DUL reactor for the associations the kiosk requests.

pynetdicom's DUL thread polls: it checks its queues and the socket, then
sleeps ``_run_loop_delay`` (1 ms by default) whenever there was nothing to do.
A 1 ms sleep adds up to 2 ms to every request/response exchange; a shorter
one keeps a core busy spinning (a third of the CPU of a C-STORE batch of small
images, taken from the spool writers and the peer on a two-core kiosk). This
reactor runs the same steps in the same order but, when idle, blocks in
``select`` on the socket and a wake-up pipe. Anything that gives the DUL work
from another thread (a primitive or event put on its queues, a request to
stop) writes to the pipe, so it reacts at once and costs nothing while it waits.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import select
import ssl
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pynetdicom.association import Association

log = logging.getLogger(__name__)

#: Longest wait without a wake-up: a safety net, not a timer (timers shorten it).
MAX_WAIT = 0.1


class _Waker:
    """A pipe whose read end becomes readable when ``wake`` is called.

    At most one byte is pending, and the pipe is read only when ``select``
    says it is readable: reading an empty non-blocking pipe raises, and every
    OSError calls glibc's strerror (gettext, under its locale locks), which
    this thread would otherwise do thousands of times a second.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self._signalled = False
        # Closed with the waker, which the queues share: no one can write to a reused descriptor.
        weakref.finalize(self, _close_fds, self.read_fd, self.write_fd)

    def wake(self) -> None:
        if self._signalled:
            return
        self._signalled = True
        os.write(self.write_fd, b"\0")

    def drain(self) -> None:
        """Consume the signal; only after ``select`` reported ``read_fd`` readable."""
        os.read(self.read_fd, 4096)
        # Cleared after the read: a wake in between is not lost, as the reactor
        # looks at its queues right after draining.
        self._signalled = False


def _close_fds(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class _WakingQueue(queue.Queue):
    """A queue that wakes the reactor whenever something is put on it."""

    def __init__(self, waker: _Waker) -> None:
        super().__init__()
        self._waker = waker

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._waker.wake()


def install(assoc: "Association") -> None:
    """Give ``assoc``'s DUL, not yet started, the event-driven reactor."""
    from pynetdicom.utils import make_target

    dul = assoc.dul
    waker = _Waker()
    dul.__dict__["_kill_requested"] = dul.__dict__.pop("_kill_thread", False)
    dul._waker = waker
    dul.to_provider_queue = _WakingQueue(waker)
    dul.event_queue = _WakingQueue(waker)
    dul.__class__ = _event_driven_class()
    # Thread.__init__ bound the original reactor as the thread's target.
    dul._target = make_target(dul.run_reactor)


@functools.cache
def _event_driven_class() -> type:
    from pynetdicom.dul import DULServiceProvider

    class EventDrivenDUL(DULServiceProvider):
        """pynetdicom's DUL with ``_run_reactor``; setting ``_kill_thread`` wakes it."""

        _kill_thread = property(lambda self: self.__dict__["_kill_requested"], _request_kill)
        run_reactor = _run_reactor

    return EventDrivenDUL


def _request_kill(dul: Any, value: bool) -> None:
    dul.__dict__["_kill_requested"] = value
    if value:
        dul._waker.wake()


def _wait(dul: Any) -> None:
    """Block until the socket has data, the reactor is woken, or its ARTIM timer is due."""
    timeout = MAX_WAIT
    timer = dul.artim_timer
    if timer.timeout is not None and timer._start_time is not None and timer._end_time is None:
        timeout = max(0.0, min(timeout, timer.remaining))
    waiting = [dul._waker.read_fd]
    sock = getattr(dul.socket, "socket", None)
    if sock is not None and getattr(dul.socket, "_is_connected", False):
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return  # decrypted data already buffered: select would not see it
        if sock.fileno() >= 0:
            waiting.append(sock)
    try:
        readable, _, _ = select.select(waiting, [], [], timeout)
    except (OSError, ValueError):
        return  # socket closed under us: the next round of checks reports it
    if dul._waker.read_fd in readable:
        dul._waker.drain()


def _run_reactor(self: Any) -> None:
    """pynetdicom's ``run_reactor`` with its idle sleep replaced by ``_wait``."""
    self._idle_timer.start()
    idle = False
    while True:
        if not self.assoc._dul_ready.is_set():
            self.assoc._dul_ready.set()
        if idle:
            _wait(self)
        if self._kill_thread:
            break
        if self.artim_timer.expired:
            self.event_queue.put("Evt18")
        try:
            if self._process_recv_primitive():
                pass
            elif self._is_transport_event():
                self._idle_timer.restart()
        except Exception:  # noqa: BLE001 - same recovery as pynetdicom's reactor
            log.exception("Exception in the DUL reactor, aborting association")
            _abort(self)
            return
        try:
            event = self.event_queue.get(block=False)
        except queue.Empty:
            idle = True
            continue
        try:
            self.state_machine.do_action(event)
        except Exception as exc:  # noqa: BLE001 - an event the state machine refuses
            # pynetdicom lets this end the thread silently, and the association then
            # hangs until its timeouts; aborting tells both sides at once.
            log.error("DICOM association aborted: %s", exc)
            _abort(self)
            return
        idle = False


def _abort(dul: Any) -> None:
    """Send an A-ABORT bypassing the state machine, which an exception may have left inconsistent."""
    from pynetdicom.pdu import A_ABORT_RQ

    pdu = A_ABORT_RQ()
    pdu.source = 0x02
    pdu.reason_diagnostic = 0x00
    dul.socket.send(pdu.encode())
    dul.assoc.is_aborted = True
    dul.assoc.is_established = False
    dul.assoc._kill = True
    dul._kill_thread = True
