"""One clip recorded from the Acquire screen: started, stopped and kept on a worker thread.

A clip is patient data of the session it was recorded in. However the recording
ends (Stop, the recorder stopping by itself at the limit, low disk space or a
lost source, the screen left, the session ended, the app stopping), the clip is
added to the station it was started for, never to the one shown by then; the
app keeps that station from ending until it is (``KioskApp.hold``). A clip
that cannot be kept there is deleted and the outcome says why.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kiosk.capture import Capture
from kiosk.errors import KioskError
from kiosk.ui.strings import T

log = logging.getLogger(__name__)

POLL = 0.1  # s between looks at the recorder's own stop (a limit, a full disk, the source lost)


@dataclass(frozen=True)
class Outcome:
    """How a recording ended. ``clip``: the clip added to ``station`` (its facts; the session has
    moved its file), None if none was kept;
    ``reason``: "" when it was stopped, else why the recorder stopped by itself ("limit", "disk",
    "source") with its ``message``; ``error``: why nothing was recorded or kept; ``lost``: frames left out."""

    station: Any
    clip: Capture | None = None
    reason: str = ""
    message: str = ""
    error: KioskError | None = None
    started: bool = False  # False: the recorder refused to start (``error`` says why)
    lost: str = ""  # frames the clip left out, for people (``Recorder.dropped_note``)


class ClipRecording:
    """Drives the ``kiosk.video.recorder.Recorder`` that ``make()`` returns (made on the worker: it
    imports PyAV) for ``station``: ``begin()``, ``finish()``; ``recorder`` once ``started`` is set.

    ``done(outcome)`` is called once, on the worker thread; ``release()`` (the app's hold on the
    station) right after the clip is in the station or is given up.
    """

    def __init__(self, make: Callable[[], Any], station: Any, done: Callable[[Outcome], None],
                 release: Callable[[], None]) -> None:
        self._make = make
        self.recorder: Any = None
        self.station = station
        self._done = done
        self._release = release
        self._finish = threading.Event()
        self.started = threading.Event()  # the recorder runs (the timer may read it)
        self._thread = threading.Thread(target=self._run, daemon=True, name="kiosk-clip")

    def begin(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        """Stop recording and keep the clip (also right after the start, if it is still starting)."""
        self._finish.set()

    def wait(self, timeout: float) -> bool:
        """Wait for the clip to be kept (or given up); False if that took longer than ``timeout``."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._done(self._record())
        except Exception:  # noqa: BLE001 - a failing callback must not keep the station held
            log.exception("reporting a recording failed")
        finally:
            self._release()

    def _record(self) -> Outcome:
        try:
            self.recorder = recorder = self._make()
            recorder.start()
        except Exception as error:  # noqa: BLE001 - VideoError (disk, source) or a bug: said, not raised
            return Outcome(self.station, error=_kiosk_error(error))
        self.started.set()
        by_itself = False
        while not self._finish.wait(POLL):  # a Stop is seen at once, the recorder's own stop within POLL
            if recorder.stopped.is_set():
                by_itself = True
                break
        # Stopped from here (Stop, the screen left): the preview closing the source is no reason to report.
        reason, message = (recorder.reason, recorder.message) if by_itself else ("", "")
        try:
            clip = recorder.stop()
        except Exception as error:  # noqa: BLE001
            return Outcome(self.station, reason=reason, message=message, error=_kiosk_error(error), started=True)
        try:
            self.station.add_clip(clip)
        except Exception as error:  # noqa: BLE001 - the session ended or cannot take the file: the clip goes
            Path(clip.encoded_path).unlink(missing_ok=True)
            return Outcome(self.station, reason=reason, message=message, error=_kiosk_error(error), started=True)
        return Outcome(self.station, clip=clip, reason=reason, message=message, started=True,
                       lost=recorder.dropped_note)


def _kiosk_error(error: Exception) -> KioskError:
    if isinstance(error, KioskError):
        return error
    log.error("recording failed", exc_info=error)
    return KioskError(T["internal_error"].format(error=f"{type(error).__name__}: {error}"))
