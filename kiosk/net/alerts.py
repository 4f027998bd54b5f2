"""The listener's security alerts: one warning line each, rate-limited, a Security Alert in the audit
trail (kiosk.audit), and a hook for other subscribers.

``Listener(..., on_security_alert=hook)`` (or setting ``listener.on_security_alert``)
calls ``hook(kind, host, detail)`` for every alert, logged or not:

- ``TLS_FAILURE``: a connection to the TLS listener failed its handshake
  (plain DICOM, TLS 1.1 or older, a missing or untrusted client certificate, silence);
- ``ASSOCIATION_REJECTED``: an association was rejected (not a configured
  node, too many associations...); ``detail`` names the calling AE title and why.

``host`` is the peer's IP address, ``detail`` the reason as logged. The hook runs
on the connection's thread: it must be quick (queue the event, do not send it
from there). An exception in it is logged as one line and does not affect the listener.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from kiosk.audit import trail

log = logging.getLogger(__name__)

TLS_FAILURE = "tls-failure"
ASSOCIATION_REJECTED = "association-rejected"

#: ``on_security_alert(kind, host, detail)``.
SecurityAlert = Callable[[str, str, str], None]

LINES_LOGGED = 20  # alert lines of one kind logged per WINDOW; a flood beyond is counted
WINDOW = 60.0  # seconds


class RateLimitedLog:
    """Logs ``message % (host, detail)`` at most ``budget`` times per ``window`` seconds; a flood beyond
    (a scanner, an attack) is summed up as ``summary % (count, seconds)`` at the next line after the window."""

    def __init__(self, logger: logging.Logger, message: str, summary: str, *, budget: int = LINES_LOGGED,
                 window: float = WINDOW) -> None:
        self._logger = logger
        self._message = message
        self._summary = summary
        self._budget = budget
        self._window = window
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._logged = 0
        self._unlogged = 0

    def warn(self, host: str, detail: object) -> bool:
        """Log one line, unless the window's budget is spent; whether it was logged."""
        with self._lock:
            now = time.monotonic()
            if now - self._started >= self._window:
                if self._unlogged:
                    self._logger.warning(self._summary, self._unlogged, now - self._started)
                self._started, self._logged, self._unlogged = now, 0, 0
            if self._logged >= self._budget:
                self._unlogged += 1
                return False
            self._logged += 1
        self._logger.warning(self._message, host, detail)
        return True


class Alerts:
    """What the listener reports: TLS failures (rate-limited lines) and rejections (logged by the listener)."""

    def __init__(self, hook: SecurityAlert | None = None) -> None:
        self.hook = hook
        self._tls = RateLimitedLog(log, "TLS handshake with %s failed: %s",
                                   "%d more TLS handshake(s) failed in the last %.0f s (not logged one by one)")

    def tls_failure(self, host: str, reason: str) -> None:
        # Audited as logged: a flood of handshakes must not flood the Audit Record Repository either.
        self.notify(TLS_FAILURE, host, reason, audit=self._tls.warn(host, reason))

    def notify(self, kind: str, host: str, detail: str, audit: bool = True) -> None:
        """Record a Security Alert in the audit trail (``audit``), then call the hook, if any, without
        letting it break the listener."""
        if audit:
            trail.network_alert(host, f"{'TLS handshake failed' if kind == TLS_FAILURE else 'association rejected'}: "
                                      f"{detail}")
        hook = self.hook
        if hook is None:
            return
        try:
            hook(kind, host, detail)
        except Exception as exc:  # noqa: BLE001 - a subscriber's bug must not end a connection's thread
            log.warning("the security alert hook failed on %s from %s: %s", kind, host, exc)
