"""Playing a clip on the Review screen: decoded on a worker thread, paced by the clock.

The worker decodes the clip's file (``kiosk.video.streams.decode_frames``) from a
position and keeps only the frame due now, scaled for the screen; a frame that
comes more than one frame time late is dropped rather than shown late, so
playback keeps the clip's own pace on a slow machine instead of falling
behind. The UI polls ``latest`` every frame and uploads it when it changed,
as the live preview does. Nothing here touches Kivy.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kiosk.errors import KioskError
from kiosk.ui.strings import T

log = logging.getLogger(__name__)

STILL_MOVING = 0.25  # s: a late frame is shown anyway when none was shown for this long


@dataclass(frozen=True)
class Picture:
    """A decoded frame to show: ``seq`` grows with every new one; ``time`` in s from the clip's start."""

    seq: int
    time: float
    pixels: Any


class ClipPlayer:
    """Plays the clip file at ``path`` (``frame_rate`` fps, ``duration`` s); ``fit(pixels)`` scales a
    frame for the screen on the worker. ``play(at)``, ``pause()``, ``show(at)`` (one frame, paused);
    read ``latest``, ``position``, ``playing``; ``error`` when decoding failed."""

    def __init__(self, path: Path, frame_rate: float, duration: float,
                 fit: Callable[[Any], Any] = lambda pixels: pixels) -> None:
        self.path = Path(path)
        self.frame_time = 1.0 / frame_rate if frame_rate > 0 else 0.04
        self.duration = duration
        self._fit = fit
        self._lock = threading.Lock()
        self._latest: Picture | None = None
        self._seq = 0
        self._run = threading.Event()
        self._run.set()  # no worker yet: "stopped"
        self._worker: threading.Thread | None = None
        self.position = 0.0  # s: the frame last decoded
        self.shown = self.dropped = 0
        self.error: KioskError | None = None

    @property
    def latest(self) -> Picture | None:
        with self._lock:
            return self._latest

    @property
    def playing(self) -> bool:
        return self._worker is not None and self._worker.is_alive() and not self._run.is_set()

    def play(self, at: float | None = None) -> None:
        """Play from ``at`` s (default: where it is; from the start once it reached the end)."""
        start = self.position if at is None else at
        if start >= self.duration - self.frame_time:
            start = 0.0
        self._start(start, once=False)

    def show(self, at: float) -> None:
        """Pause and show the frame at ``at`` s."""
        self._start(at, once=True)

    def pause(self) -> None:
        self._run.set()

    def close(self) -> None:
        """Stop and wait for the worker (its decoder holds the file open)."""
        self.pause()
        worker = self._worker
        if worker is not None:
            worker.join(timeout=5)

    def _start(self, at: float, once: bool) -> None:
        self.pause()
        self._run = stop = threading.Event()
        self.position = max(0.0, min(at, self.duration))
        self._worker = threading.Thread(target=self._decode, args=(self.position, once, stop), daemon=True,
                                        name="kiosk-playback")
        self._worker.start()

    def _decode(self, start: float, once: bool, stop: threading.Event) -> None:
        frames: Any = None
        try:
            from kiosk.video.streams import decode_frames

            frames = decode_frames(self.path, start)
            began = time.monotonic()
            last_shown = began
            for at, pixels in frames:
                if stop.is_set():
                    return
                if at < start - self.frame_time / 2:
                    continue  # decoding starts at the keyframe before ``start``
                self.position = at
                if once:
                    self._publish(at, pixels, stop)
                    return
                due = began + (at - start)
                now = time.monotonic()
                if now - due > self.frame_time and now - last_shown < STILL_MOVING:
                    self.dropped += 1  # late: the next frame is nearer its time
                    continue
                if due > now and stop.wait(due - now):
                    return
                self._publish(at, pixels, stop)
                last_shown = time.monotonic()
            self.position = self.duration  # played to the end
        except KioskError as error:
            self.error = error
        except Exception as error:  # noqa: BLE001 - a decoder error ends playback with a sentence
            log.warning("playing a clip failed", exc_info=True)
            self.error = KioskError(T["clip_unplayable"].format(error=f"{type(error).__name__}: {error}"))
        finally:
            if frames is not None and hasattr(frames, "close"):
                frames.close()  # the decoder's file
            if not once:
                stop.set()  # ``playing`` turns False by itself at the end

    def _publish(self, at: float, pixels: Any, stop: threading.Event) -> None:
        pixels = self._fit(pixels)
        with self._lock:
            if stop is not self._run:
                return  # a newer play or show has begun: this worker's frame is stale
            self._seq += 1
            self._latest = Picture(self._seq, at, pixels)
        self.shown += 1
