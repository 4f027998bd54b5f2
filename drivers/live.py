"""The live-frame engine: one capture thread per live source, the latest frame, snapshots, and the
frames handed to subscribers (``kiosk.video.recorder`` records clips that way)."""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from drivers.device import Device, DeviceInfo, ProgressCallback
from drivers.errors import DisconnectedError, DriverError, TimedOutError
from kiosk.capture import Capture, EncodedFormat, SourceKind
from kiosk.video.facts import VideoFacts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """A live frame: RGB pixels, a sequence number and when it was grabbed (monotonic s).

    ``encoded``: the source's own coded frame when it delivers one (``LiveDevice.encoded_codec``
    says what: a JPEG, or an H.264 access unit in Annex B), ``keyframe`` whether decoding can
    start at it.
    """

    seq: int
    pixels: np.ndarray
    grabbed_at: float
    encoded: bytes | None = None
    keyframe: bool = True


@dataclass(frozen=True)
class Coded:
    """What ``_read`` returns for a source that delivers coded frames: the decoded picture and the
    source's bytes (see ``Frame.encoded``)."""

    pixels: np.ndarray
    encoded: bytes
    keyframe: bool = True


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
    # What ``Frame.encoded`` holds: "mjpeg" (a JPEG per frame), "h264" (Annex B access units), "" (nothing).
    encoded_codec: str = ""
    # The coded stream's facts (profile, level, size, chroma) when ``encoded_codec`` is a video codec.
    stream_facts: VideoFacts | None = None

    def __init__(self, info: DeviceInfo, stall_timeout: float = 1.5, reconnect_interval: float = 1.0) -> None:
        super().__init__(info)
        self.stall_timeout = stall_timeout
        self.reconnect_interval = reconnect_interval
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._seq = 0
        self._error: DriverError | None = None
        self._ended = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribers: list[Callable[[Frame], None]] = []
        self.frame_rate: float | None = None
        self.reconnects = 0

    # subclass hooks ---------------------------------------------------------
    @abstractmethod
    def _open_source(self) -> None:
        """Open (or reopen) the source; raise DriverError if it cannot be opened."""

    @abstractmethod
    def _read(self) -> np.ndarray | Coded | None:
        """Block for the next RGB frame (with the source's bytes, ``Coded``, when it delivers coded
        frames); None when the source failed or ended."""

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

    def _publish(self, picture: np.ndarray | Coded) -> None:
        with self._cond:
            self._seq += 1
            if isinstance(picture, Coded):
                frame = Frame(self._seq, picture.pixels, time.monotonic(), picture.encoded, picture.keyframe)
            else:
                frame = Frame(self._seq, picture, time.monotonic())
            self._latest = frame
            self._error = None
            subscribers = list(self._subscribers)
            self._cond.notify_all()
        for callback in subscribers:
            try:
                callback(frame)
            except Exception:  # noqa: BLE001 - a subscriber's bug must not stop the preview
                log.exception("a frame subscriber of %s failed", self.info.uri)

    def subscribe(self, callback: Callable[[Frame], None]) -> Callable[[], None]:
        """Call ``callback`` with every frame from now on, in the capture thread (so it must return at
        once: hand the frame to a queue); returns the function that ends the subscription."""
        with self._cond:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._cond:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

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
        if frame.encoded is not None and self.encoded_codec == "mjpeg":
            # The card's own JPEG, kept byte for byte: that JPEG is the lossy step, recorded from it.
            return Capture(kind=self.kind, pixels=frame.pixels, encoded=frame.encoded,
                           encoded_format=EncodedFormat.JPEG, index=index, source=self.info.uri,
                           frame_rate=self.frame_rate, metadata={"seq": frame.seq, **metadata})
        return Capture(kind=self.kind, pixels=frame.pixels, index=index, source=self.info.uri,
                       frame_rate=self.frame_rate, metadata={"seq": frame.seq, **self.lossy_metadata(), **metadata})

    def lossy_metadata(self) -> dict[str, Any]:
        """``{"lossy_history": ...}`` of decoded frames (the source coding's steps), or {} for raw pixels."""
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
