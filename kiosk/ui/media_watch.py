"""Watching ``[media] mount_points`` while a screen is shown: a CD or USB stick inserted or removed.

The mount points are looked at on a worker thread every ``INTERVAL`` seconds (a
slow drive must not stall drawing); the screen hears about the media found on
the UI thread, once at the start and then whenever they change.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from kiosk.errors import KioskError

log = logging.getLogger(__name__)

INTERVAL = 2.0  # seconds between two looks: a medium shows up about that long after it is mounted


class MediaWatch:
    """Calls ``find()`` off the UI thread while started; ``changed(roots)`` on the UI thread when the
    answer differs from the previous one (and after the first look). One look at a time."""

    def __init__(self, app: Any, find: Callable[[], list[Path]], changed: Callable[[list[Path]], None]) -> None:
        self.app = app
        self.find = find
        self.changed = changed
        self.roots: list[Path] | None = None  # the last answer
        self._event: Any = None
        self._looking = False
        self._round = 0  # answers from before a stop are dropped
        self._reported = False

    def start(self) -> None:
        if self._event is not None:
            return
        self.roots = None
        self._event = self.app.schedule(self.look, INTERVAL)
        self.look()

    def stop(self) -> None:
        self._round += 1
        if self._event is not None:
            self._event.cancel()
            self._event = None

    def look(self, _dt: float = 0) -> None:
        if self._looking:
            return  # the previous look has not answered yet (a drive spinning up)
        self._looking = True
        round_ = self._round

        def done(roots: list[Path]) -> None:
            self._looking = False
            if round_ == self._round and roots != self.roots:
                self.roots = list(roots)
                self.changed(self.roots)

        def failed(error: KioskError) -> None:
            self._looking = False
            if not self._reported:  # e.g. the media modules are not installed: no tile, said once in the log
                self._reported = True
                log.info("removable media are not watched: %s", error.message)
            done([])

        self.app.run_async(self.find, done, failed, session_bound=False)
