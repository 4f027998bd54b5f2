"""The driver and device interfaces: what a device offers, what to acquire, progress.

A *driver* knows one kind of source (SANE scanners, OpenCV video, files, demo
devices) and is found by the scheme of a source URI (see ``drivers.registry``).
It lists devices and opens one. A *device* reports its capabilities, takes
settings (and reports what it actually applied: hardware clamps silently),
acquires one capture or a batch (ADF pages as a generator). ``cancel()`` may be
called from any thread. Live sources are ``drivers.live.LiveDevice``.

Optional dependencies (python-sane, OpenCV) are imported only when a driver
is used; a driver whose dependency is missing says so with the pip command.
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Mapping

from drivers.errors import CancelledError, DriverUnavailableError
from kiosk.capture import Capture, SourceKind


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
            raise DriverUnavailableError(problem, "or use another source; 'kiosk devices' lists what works")

    @abstractmethod
    def discover(self) -> list[DeviceInfo]:
        """Devices attached now (may be empty)."""

    @abstractmethod
    def open(self, target: str, options: Mapping[str, Any] | None = None) -> Device:
        """Open ``target`` (the URI after the scheme); ``options`` are driver settings from config."""
