"""Cutting a wait for an answer short once the caller cancelled (the outbox stopping).

A request waits for its answer up to its node's timeout (60 s by default),
longer than a service manager waits for a stop (systemd's 30 s). After
``CANCEL_GRACE`` the answer is not waited for: the connection is cut, which
wakes the waiting thread. C-STORE (``kiosk.net.store``) and STOW-RS
(``kiosk.net.stow``) share this.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)

CANCEL_GRACE = 1.0  # s an answer in flight may still take once cancelled
CANCEL_POLL = 0.2  # s between looks at the cancel flag


class CancelWatch:
    """Calls ``cut()`` once ``cancel`` is set and ``end()`` has not come ``CANCEL_GRACE`` s later;
    ``fired`` then says the answer was cut off. ``what`` names the cut for the log line."""

    def __init__(self, cancel: threading.Event, cut: Callable[[], None], what: str, name: str) -> None:
        self.cancel = cancel
        self.fired = False
        self._cut = cut
        self._what = what
        self._ended = threading.Event()
        threading.Thread(target=self._watch, name=name, daemon=True).start()

    def _watch(self) -> None:
        while not self.cancel.wait(CANCEL_POLL):
            if self._ended.is_set():
                return
        if self._ended.wait(CANCEL_GRACE):
            return
        self.fired = True
        log.warning("cancelled: %s (no answer within %g s)", self._what, CANCEL_GRACE)
        self._cut()

    def end(self) -> None:
        """The run is over: stop watching (the thread ends at its next look, without cutting anything)."""
        self._ended.set()
