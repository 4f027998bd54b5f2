"""The sender: delivers the audit queue to the repository, in order, from one process at a time.

A thread of a long-running process (the delivery service, so ``kiosk outbox
run``, ``kiosk send --wait`` and the touch UI). Processes share the queue; a
lock file makes one of them the sender, the others try again later. A failed
delivery is retried with exponential backoff (``BACKOFF_FIRST`` doubling up
to ``BACKOFF_MAX``); the reason is logged once per change, without the messages'
content. Sent messages older than ``keep_days`` are deleted.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time

from kiosk.audit import syslog
from kiosk.audit.queue import AuditQueue
from kiosk.config import AuditConfig

log = logging.getLogger(__name__)

BACKOFF_FIRST = 2.0
BACKOFF_MAX = 120.0
LOCK_RETRY = 30.0  # s before asking again for the sender's lock another process holds
IDLE = 300.0  # s between looks at the queue when nobody wakes us (messages recorded by other processes)
RETENTION_EVERY = 3600.0
BATCH = 200
LOCK_FILENAME = "sender.lock"


class Sender:
    """Delivers ``queue`` as ``audit`` says; ``start()`` a thread, or ``deliver()`` once."""

    def __init__(self, queue: AuditQueue, audit: AuditConfig, backoff_first: float = BACKOFF_FIRST,
                 backoff_max: float = BACKOFF_MAX) -> None:
        self.queue, self.audit = queue, audit
        self.repository = syslog.Repository.parse(audit.repository)
        self.backoff_first, self.backoff_max = backoff_first, backoff_max
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._last_problem = ""

    # -- one pass ---------------------------------------------------------------------------------

    def deliver(self) -> tuple[int, str]:
        """Send what waits until the queue is empty or delivery fails: (messages sent, the problem or "")."""
        if self.repository is None:
            return 0, ""
        total = 0
        context = None
        while True:  # bounded: each pass sends or fails, and the queue is finite
            batch = self.queue.waiting(BATCH)
            if not batch:
                return total, ""
            ids = [entry.id for entry in batch]
            try:
                if self.repository.scheme == "tls":
                    if context is None:
                        context = syslog.tls_context(self.audit.ca, self.audit.cert, self.audit.key)
                    syslog.send_tls(self.repository, context, [entry.frame for entry in batch])
                    self.queue.mark_sent(ids)
                else:
                    self.queue.mark_sent(ids[:syslog.send_udp(self.repository, [e.frame for e in batch])])
            except syslog.TransportError as exc:
                if exc.sent:
                    self.queue.mark_sent(ids[:exc.sent])
                self.queue.mark_failed(ids[exc.sent:], exc.message)
                return total + exc.sent, exc.message
            total += len(ids)
        return total, ""

    def deliver_once(self) -> tuple[int, str] | None:
        """``deliver()`` as the one sender; None when another process is the sender now."""
        if not self._locked():
            return None
        try:
            return self.deliver()
        finally:
            self._unlock()

    def purge(self) -> int:
        """Delete sent messages older than ``keep_days``."""
        return self.queue.delete_sent_before(time.time() - self.audit.keep_days * 86400)

    # -- the thread -------------------------------------------------------------------------------

    def start(self) -> "Sender":
        self._thread = threading.Thread(target=self._run, name="kiosk-audit", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """A message was recorded: send it now (unless backing off)."""
        self._wake.set()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._unlock()

    def _run(self) -> None:
        failures = 0
        next_purge = 0.0
        while not self._stop.is_set():
            wait = IDLE
            try:
                if not self._locked():
                    self._sleep(LOCK_RETRY, wakeable=False)
                    continue
                if time.time() >= next_purge:
                    self.purge()
                    next_purge = time.time() + RETENTION_EVERY
                sent, problem = self.deliver()
                self._report(sent, problem)
                if problem:
                    failures += 1
                    wait = min(self.backoff_first * 2 ** (failures - 1), self.backoff_max)
                    self._sleep(wait, wakeable=False)
                    continue
                failures = 0
            except Exception:  # noqa: BLE001 - auditing must never take the process down; the messages wait
                log.exception("audit: the sender failed; it tries again in %g s", self.backoff_max)
                wait = self.backoff_max
            self._sleep(wait, wakeable=True)
        if self._lock_fd is not None and not self._last_problem:
            self.deliver()  # what was recorded while stopping (e.g. Application Stop), if the repository answers

    def _sleep(self, seconds: float, wakeable: bool) -> None:
        if wakeable:
            self._wake.wait(seconds)
            self._wake.clear()
        else:
            self._stop.wait(seconds)

    def _report(self, sent: int, problem: str) -> None:
        if problem and problem != self._last_problem:
            log.warning("audit: messages wait: %s", problem)
        elif not problem and self._last_problem:
            log.info("audit: the repository %s answers again; %d waiting message(s) sent", self.repository, sent)
        self._last_problem = problem

    def _locked(self) -> bool:
        """Hold the lock that makes this process the one sender."""
        if self._lock_fd is not None:
            return True
        fd = os.open(self.queue.folder / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
