"""The live-frame engine: one capture thread per live source, the latest frame, snapshots and clips."""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from drivers.device import Device, DeviceInfo, Progress, ProgressCallback
from drivers.errors import DisconnectedError, DriverError, TimedOutError
from kiosk.capture import Capture, SourceKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """A live frame: RGB pixels, a sequence number and when it was grabbed (monotonic s)."""

    seq: int
    pixels: np.ndarray
    grabbed_at: float


class LiveDevice(Device):
    """A source of frames (camera, capture card, stream, video file) read by one thread.

    The thread keeps only the latest frame, so memory is bounded and a slow
    consumer never sees growing lag. A source that fails is reported as lost
    (``DisconnectedError``) and reopened every ``reconnect_interval`` seconds;
    one that delivers nothing for ``stall_timeout`` seconds is reported as
    stalled (``TimedOutError``), whether or not the read call returns.
    Subclasses implement ``_open_source``, ``_read`` and ``_close_source``.
    """

    kind = SourceKind.VIDEO_FRAME
    ends: bool = False  # files end; streams and devices reconnect
    # [ratio, method] steps the source's own coding put every frame through (none: raw pixels).
    lossy_history: list[list] = []

    def __init__(self, info: DeviceInfo, stall_timeout: float = 1.5, max_clip_seconds: float = 10.0,
                 reconnect_interval: float = 1.0) -> None:
        super().__init__(info)
        self.stall_timeout = stall_timeout
        self.max_clip_seconds = max_clip_seconds
        self.reconnect_interval = reconnect_interval
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._seq = 0
        self._error: DriverError | None = None
        self._ended = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._recorders: list[list[Frame]] = []
        self.frame_rate: float | None = None
        self.reconnects = 0

    # subclass hooks ---------------------------------------------------------
    @abstractmethod
    def _open_source(self) -> None:
        """Open (or reopen) the source; raise DriverError if it cannot be opened."""

    @abstractmethod
    def _read(self) -> np.ndarray | None:
        """Block for the next RGB frame; None when the source failed or ended."""

    @abstractmethod
    def _close_source(self) -> None:
        """Release the source (called from the capture thread)."""

    # life cycle -------------------------------------------------------------
    def start(self) -> None:
        """Open the source and start the capture thread (idempotent)."""
        if self._thread is not None:
            return
        self._open_source()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"capture {self.info.uri}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            # A stream read may block up to its read timeout; do not wait forever for it.
            self._thread.join(timeout=5)
            self._thread = None
        else:
            self._close_source()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    pixels = self._read()
                except Exception:  # noqa: BLE001 - a decoder error is a lost source, not a dead thread
                    log.warning("reading %s failed", self.info.uri, exc_info=True)
                    pixels = None
                if self._stop.is_set():
                    break
                if pixels is not None:
                    self._publish(pixels)
                    continue
                if self.ends:
                    with self._cond:
                        self._ended = True
                        self._cond.notify_all()
                    break
                self._set_error(DisconnectedError(
                    f"{self.info.name}: the video source was lost",
                    "check the cable or the stream; reconnecting every second"))
                self._reconnect()
        finally:
            self._close_source()

    def _reconnect(self) -> None:
        while not self._stop.wait(self.reconnect_interval):
            self._close_source()
            try:
                self._open_source()
            except DriverError as error:
                self._set_error(DisconnectedError(error.message, "reconnecting every second"))
                continue
            self.reconnects += 1
            return

    def _publish(self, pixels: np.ndarray) -> None:
        with self._cond:
            self._seq += 1
            frame = Frame(self._seq, pixels, time.monotonic())
            self._latest = frame
            self._error = None
            for frames in self._recorders:
                frames.append(frame)
            self._cond.notify_all()

    def _set_error(self, error: DriverError) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    # consumers --------------------------------------------------------------
    @property
    def state(self) -> str:
        """"live", "stalled", "lost", "ended" or "stopped"."""
        with self._cond:
            return self._state_locked()

    def _state_locked(self) -> str:
        if self._thread is None:
            return "stopped"
        if self._ended:
            return "ended"
        if self._error is not None:
            return "lost"
        if self._latest is None or time.monotonic() - self._latest.grabbed_at > self.stall_timeout:
            return "stalled"
        return "live"

    def latest(self, after: int = 0, timeout: float | None = None) -> Frame:
        """The newest frame with ``seq > after``, waiting for it.

        Raises DisconnectedError when the source is lost, TimedOutError when
        nothing arrives within ``timeout`` (default: the stall timeout, so a
        frozen source is reported within that time), CancelledError after
        ``cancel()``, and DisconnectedError at the end of a file.
        """
        self.start()
        wait = self.stall_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                if self._cancel.is_set():
                    self.check_cancelled()
                if self._latest is not None and self._latest.seq > after:
                    return self._latest
                if self._error is not None:
                    raise self._error
                if self._ended:
                    raise DisconnectedError(f"{self.info.name}: the video has ended", "open it again to replay")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimedOutError(
                        f"{self.info.name}: no picture for {wait:.1f} s (the source has stalled)",
                        "check that the camera or stream is running")
                self._cond.wait(min(left, 0.1))

    def frames(self, timeout: float | None = None) -> Iterator[Frame]:
        """Live preview: every newest frame, skipping those a slow consumer missed."""
        seq = 0
        while True:
            frame = self.latest(seq, timeout)
            seq = frame.seq
            yield frame

    def _capture(self, frame: Frame, index: int = 0, **metadata: Any) -> Capture:
        return Capture(kind=self.kind, pixels=frame.pixels, index=index, source=self.info.uri,
                       frame_rate=self.frame_rate, metadata={"seq": frame.seq, **self._lossy(), **metadata})

    def _lossy(self) -> dict[str, Any]:
        return {"lossy_history": [list(step) for step in self.lossy_history]} if self.lossy_history else {}

    def acquire(self, progress: ProgressCallback | None = None) -> Capture:
        """A snapshot: the next frame grabbed after this call."""
        self._cancel.clear()
        with self._cond:
            after = self._latest.seq if self._latest else 0
        return self._capture(self.latest(after))

    def snapshots(self, count: int) -> list[Capture]:
        """``count`` distinct consecutive frames."""
        self._cancel.clear()
        result: list[Capture] = []
        with self._cond:
            seq = self._latest.seq if self._latest else 0
        for index in range(count):
            frame = self.latest(seq)
            seq = frame.seq
            result.append(self._capture(frame, index))
        return result

    def record(self, seconds: float | None = None, stop: threading.Event | None = None,
               progress: ProgressCallback | None = None) -> list[Capture]:
        """Every frame for ``seconds`` (or until ``stop`` or ``cancel()``), at most ``max_clip_seconds``.

        A lost or stalled source ends the recording with an error; ``cancel()``
        discards the clip (CancelledError); ``stop`` keeps what was recorded.
        """
        self.start()
        self._cancel.clear()
        limit = min(seconds, self.max_clip_seconds) if seconds else self.max_clip_seconds
        frames: list[Frame] = []
        with self._cond:
            self._recorders.append(frames)
        try:
            started = time.monotonic()
            seq = 0
            while True:
                elapsed = time.monotonic() - started
                if elapsed >= limit or (stop is not None and stop.is_set()):
                    break
                self.check_cancelled()
                try:
                    seq = self.latest(seq).seq
                except DisconnectedError:
                    if not self._ended:
                        raise
                    break  # a video file ended: keep the clip so far
                if progress:
                    progress(Progress(0, min(1.0, elapsed / limit), f"{len(frames)} frames"))
        finally:
            with self._cond:
                self._recorders.remove(frames)
        kept = [f for f in frames if f.grabbed_at - frames[0].grabbed_at < limit] if frames else []
        if self.frame_rate:  # N seconds at the nominal rate, not one frame more
            kept = kept[: max(1, round(limit * self.frame_rate))]
        if not kept:
            raise TimedOutError(f"{self.info.name}: the clip has no frames", "check that the source is running")
        rate = self.frame_rate or (len(kept) - 1) / max(1e-3, kept[-1].grabbed_at - kept[0].grabbed_at)
        return [Capture(kind=self.kind, pixels=f.pixels, index=i, source=self.info.uri, frame_rate=rate,
                        metadata={"seq": f.seq, "clip": True, **self._lossy()}) for i, f in enumerate(kept)]
