"""The one driver interface: devices, capabilities, presets, typed errors, registry.

A *driver* knows one kind of source (SANE scanners, OpenCV video, files, demo
devices) and is found by the scheme of a source URI (``sane:test:0``,
``video:/dev/video0``, ``file:scan.pdf``, ``demo:scanner``). It lists devices
and opens one. A *device* reports its capabilities, takes settings (and reports
what it actually applied: hardware clamps silently), acquires one capture, a
batch (ADF pages as a generator), and for live sources a preview stream,
snapshots and clips. ``cancel()`` may be called from any thread.

Optional dependencies (python-sane, OpenCV) are imported only when a driver
is used; a driver whose dependency is missing says so with the pip command.
Nothing here imports pydicom, pynetdicom or Kivy.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from kiosk.capture import Capture, SourceKind
from kiosk.errors import KioskError, UsageError

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- errors


class DriverError(KioskError):
    """An acquisition failed; the message names the device and what to do."""


class DriverUnavailableError(DriverError):
    """The driver's optional dependency is not installed."""


class NoDeviceError(DriverError):
    """The device does not exist or is not attached."""


class DeviceBusyError(DriverError):
    """The device is in use by another program (or another window)."""


class PaperJamError(DriverError):
    """The document feeder jammed."""


class CoverOpenError(DriverError):
    """The scanner cover or feeder lid is open."""


class OutOfPaperError(DriverError):
    """The feeder is empty when a page was asked for."""


class DisconnectedError(DriverError):
    """The device or stream went away during use."""


class TimedOutError(DriverError):
    """The device stopped answering (a stalled stream, a hung scanner)."""


class CancelledError(DriverError):
    """The user cancelled; nothing partial is passed off as complete."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DeviceInfo:
    """One attached device: ``uri`` opens it, ``name`` is for people."""

    uri: str
    name: str
    kind: str  # "scanner", "camera", "file"
    detail: str = ""


@dataclass(frozen=True)
class Capabilities:
    """What a device can do; empty tuples mean "not applicable" or "unknown"."""

    modes: tuple[str, ...] = ()  # "color", "gray"
    depths: tuple[int, ...] = ()
    resolutions: tuple[float, float] | None = None  # min, max dpi
    sources: tuple[str, ...] = ()  # "flatbed", "adf", "transparency"
    area_mm: tuple[float, float] | None = None  # widest, tallest scan area
    frame_sizes: tuple[tuple[int, int], ...] = ()
    frame_rates: tuple[float, ...] = ()
    pixel_formats: tuple[str, ...] = ()  # FOURCC codes
    preview: bool = False


@dataclass(frozen=True)
class Settings:
    """What to acquire. ``None`` keeps the device's current value.

    Scanner fields: mode, depth, dpi, source, area_mm (left, top, right,
    bottom in mm), film (the image is a digitized film: Conversion Type DF).
    Video fields: width, height, fps, fourcc.
    """

    mode: str | None = None
    depth: int | None = None
    dpi: float | None = None
    source: str | None = None
    area_mm: tuple[float, float, float, float] | None = None
    film: bool = False
    photo: bool = False
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    fourcc: str | None = None

    def merged(self, **changes: Any) -> "Settings":
        """A copy with every non-None change applied."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class Progress:
    """A step of a long acquisition: page (0-based) and the fraction of it done."""

    page: int
    fraction: float
    message: str = ""


ProgressCallback = Callable[[Progress], None]


def scan_kind(settings: Settings, depth: int | None = None) -> SourceKind:
    """Conversion Type of a scan: film preset or 16-bit gray is DF, photo SI, else SD."""
    gray16 = (depth or settings.depth) == 16 and settings.mode != "color"
    if settings.film or gray16:
        return SourceKind.DIGITIZED_FILM
    if settings.photo:
        return SourceKind.SCANNED_IMAGE
    return SourceKind.SCANNED_DOCUMENT


# --------------------------------------------------------------------------- presets

PRESET_KEYS = {"mode": str, "depth": int, "dpi": (int, float), "source": str, "film": bool}
MODES = ("color", "gray")
SOURCES = ("flatbed", "adf", "transparency")

BUILTIN_PRESETS: dict[str, Settings] = {
    "Document": Settings(mode="gray", depth=8, dpi=300, source="flatbed"),
    "Film": Settings(mode="gray", depth=16, dpi=300, source="transparency", film=True),
    "Photo": Settings(mode="color", depth=8, dpi=600, source="flatbed", photo=True),
}


# Paper sizes for ``--area`` (width, height in mm; ISO 216 and US sizes).
PAPER_SIZES_MM: dict[str, tuple[float, float]] = {
    "A4": (210.0, 297.0), "A5": (148.0, 210.0), "A6": (105.0, 148.0), "B5": (176.0, 250.0),
    "LETTER": (215.9, 279.4), "LEGAL": (215.9, 355.6),
}


def parse_area(text: str) -> tuple[float, float, float, float]:
    """A scan area (left, top, right, bottom in mm) from a paper size (``A4``, ``LETTER``) or ``X,Y,W,H`` in mm."""
    size = PAPER_SIZES_MM.get(text.strip().upper())
    if size:
        return (0.0, 0.0, *size)
    try:
        x, y, w, h = map(float, text.split(","))
    except ValueError:  # not four numbers
        raise UsageError(f"scan area {text!r} is neither a paper size nor X,Y,W,H",
                         f"use one of {', '.join(PAPER_SIZES_MM)}, or X,Y,W,H in mm, e.g. 0,0,100,150") from None
    if not (x >= 0 and y >= 0 and w > 0 and h > 0 and math.isfinite(x + y + w + h)):
        raise UsageError(f"scan area {text!r}: X and Y must be 0 or more, W and H more than 0 (mm)")
    return (x, y, x + w, y + h)


def format_area(area: tuple[float, float, float, float]) -> str:
    """``W x H mm at X,Y`` for people."""
    left, top, right, bottom = area
    return f"{right - left:g} x {bottom - top:g} mm at {left:g},{top:g}"


def area_matches(wanted: tuple[float, ...], got: tuple[float, ...], tolerance: float = 1.0) -> bool:
    """True if a read-back area is the requested one up to the device's step (SANE test: 1 mm)."""
    return all(abs(a - b) <= tolerance for a, b in zip(wanted, got))


def check_preset(values: Mapping[str, Any]) -> str | None:
    """Validate one ``[presets.NAME]`` table; a message or None (used by kiosk.config)."""
    for key, value in values.items():
        if key not in PRESET_KEYS:
            return f"unknown setting {key!r}; use {', '.join(PRESET_KEYS)}"
        types = PRESET_KEYS[key]
        if isinstance(value, bool) != (types is bool) or not isinstance(value, types):
            return f"{key} = {value!r} has the wrong type"
    if values.get("mode", "gray") not in MODES:
        return f"mode = {values['mode']!r}; use \"color\" or \"gray\""
    if values.get("depth", 8) not in (8, 16):
        return f"depth = {values['depth']}; use 8 or 16"
    if values.get("source", "flatbed") not in SOURCES:
        return f"source = {values['source']!r}; use one of {', '.join(SOURCES)}"
    if values.get("dpi", 300) <= 0:
        return f"dpi = {values['dpi']}; use a positive resolution"
    return None


PRESET_NAME_MAX = 32
RESERVED_SUFFIX = " (feeder)"  # the touch UI offers "NAME (feeder)" for flatbed presets


def check_preset_name(name: str) -> str | None:
    """Validate the NAME of a ``[presets.NAME]`` of one's own; a message or None (used by kiosk.config)."""
    if not name.strip() or name != name.strip():
        return "a preset name must not be empty or start or end with spaces"
    if len(name) > PRESET_NAME_MAX:
        return f"a preset name has at most {PRESET_NAME_MAX} characters"
    if any(not c.isprintable() for c in name):
        return "a preset name must not contain control characters"
    if name.lower().endswith(RESERVED_SUFFIX):
        return f"a preset name must not end with {RESERVED_SUFFIX.strip()!r} (the touch screen adds it)"
    for builtin in BUILTIN_PRESETS:
        if name.lower() == builtin.lower():
            return f"write the built-in preset's name as {builtin!r}"
    return None


def presets(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Settings]:
    """Built-in presets with the ``[presets.NAME]`` tables applied: overrides of the built-in ones,
    and presets of one's own, which start from Document's settings."""
    result = dict(BUILTIN_PRESETS)
    for name, values in (overrides or {}).items():
        if values:
            result[name] = result.get(name, BUILTIN_PRESETS["Document"]).merged(**values)
    return result


def preset(name: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
    """One preset by name (case-insensitive); UsageError naming the choices otherwise."""
    table = presets(overrides)
    for key, value in table.items():
        if key.lower() == name.lower():
            return value
    raise UsageError(f"unknown preset {name!r}", f"use one of {', '.join(table)}")


# --------------------------------------------------------------------------- devices


class Device(ABC):
    """An opened device. Use as a context manager; ``close()`` is idempotent."""

    info: DeviceInfo

    def __init__(self, info: DeviceInfo) -> None:
        self.info = info
        self._cancel = threading.Event()
        self.settings = Settings()

    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this device offers."""

    @abstractmethod
    def configure(self, settings: Settings) -> Settings:
        """Apply settings and return what the device actually uses (read back)."""

    @abstractmethod
    def acquire(self, progress: ProgressCallback | None = None) -> Capture:
        """One image (a scan, a snapshot)."""

    def batch(self, progress: ProgressCallback | None = None) -> Iterator[Capture]:
        """Several images (ADF pages) as they come; by default just one."""
        yield self.acquire(progress)

    def cancel(self) -> None:
        """Stop the acquisition in progress; safe from any thread."""
        self._cancel.set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise CancelledError(f"{self.info.name}: acquisition cancelled", "nothing partial was kept")

    def close(self) -> None:
        """Release the device."""

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


# --------------------------------------------------------------------------- drivers


class Driver(ABC):
    """A kind of source, found by URI scheme. Subclasses declare their optional dependency."""

    scheme: str = ""
    title: str = ""
    module: str | None = None  # the optional import, e.g. "sane"
    package: str | None = None  # its pip name, e.g. "python-sane"
    extra: str | None = None  # the kiosk extra that installs it, e.g. "scanner"

    def problem(self) -> str | None:
        """Why this driver cannot be used here, or None when it can."""
        if self.module is None:
            return None
        try:
            importlib.import_module(self.module)
        except ImportError as error:
            return (f"{self.title} needs {self.package}: pip install kiosk[{self.extra}] "
                    f"({type(error).__name__}: {error})")
        return None

    def require(self) -> None:
        """Raise DriverUnavailableError if the optional dependency is missing."""
        problem = self.problem()
        if problem:
            raise DriverUnavailableError(problem, f"or use another source; 'kiosk devices' lists what works")

    @abstractmethod
    def discover(self) -> list[DeviceInfo]:
        """Devices attached now (may be empty)."""

    @abstractmethod
    def open(self, target: str, options: Mapping[str, Any] | None = None) -> Device:
        """Open ``target`` (the URI after the scheme); ``options`` are driver settings from config."""


# Scheme -> "module:Class"; imported only when asked for, so optional
# dependencies never load at start-up.
REGISTRY: dict[str, str] = {
    "sane": "drivers.sane:SaneDriver",
    "video": "drivers.video:VideoDriver",
    "file": "drivers.file_source:FileDriver",
    "demo": "drivers.demo:DemoDriver",
}

_instances: dict[str, Driver] = {}


def parse_uri(uri: str) -> tuple[str, str]:
    """Split ``scheme:target``; UsageError for an unknown scheme."""
    scheme, sep, target = uri.partition(":")
    if not sep or scheme not in REGISTRY:
        raise UsageError(f"{uri!r} is not a source this kiosk knows",
                         f"write SCHEME:TARGET with SCHEME one of {', '.join(REGISTRY)} (e.g. demo:scanner)")
    if not target:
        raise UsageError(f"{uri!r} names no device", "e.g. sane:test:0, video:/dev/video0, file:scan.pdf")
    return scheme, target


def get_driver(scheme: str) -> Driver:
    """The driver for a scheme (one instance per process)."""
    if scheme not in _instances:
        if scheme not in REGISTRY:
            raise UsageError(f"no driver for {scheme!r}", f"use one of {', '.join(REGISTRY)}")
        module, _, cls = REGISTRY[scheme].partition(":")
        _instances[scheme] = getattr(importlib.import_module(module), cls)()
    return _instances[scheme]


def all_drivers() -> list[Driver]:
    return [get_driver(scheme) for scheme in REGISTRY]


def open_device(uri: str, options: Mapping[str, Any] | None = None) -> Device:
    """Open the device a source URI names; raises a DriverError subclass for people."""
    scheme, target = parse_uri(uri)
    driver = get_driver(scheme)
    driver.require()
    return driver.open(target, options)


@dataclass
class Discovery:
    """What ``discover_all`` found: devices, and drivers that cannot be used with why."""

    devices: list[DeviceInfo] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


def discover_all() -> Discovery:
    """Ask every driver for its devices; a missing dependency or failure is reported, not raised."""
    found = Discovery()
    for driver in all_drivers():
        problem = driver.problem()
        if problem:
            found.unavailable[driver.scheme] = problem
            continue
        try:
            found.devices.extend(driver.discover())
        except DriverError as error:
            found.unavailable[driver.scheme] = str(error)
    return found
