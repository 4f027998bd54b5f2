"""Scanners through SANE (python-sane, optional: ``pip install kiosk[scanner]``).

python-sane quirks handled here (see docs/drivers.md):
- 16-bit ``scan()`` returns garbage: every scan goes through the array path
  (``arr_snap``'s C call), which returns correct uint16 samples.
- Raising inside the ``progress=`` callback segfaults: the callback wrapper
  swallows and logs everything.
- Options out of range are clamped silently: every setting is read back and
  the effective values are what the capture reports (dpi, depth, mode).
- A scan cancelled from another thread may come back as a short image with no
  error: we keep our own cancel flag and compare the height with the
  parameters, so a partial image is never passed off as complete.
- Handles are not thread-safe: every call on a handle runs on the device's
  own worker thread; only ``sane_cancel`` (async-safe by the SANE standard)
  is called from the cancelling thread.
- Backends built on ``sanei_thread`` (the test backend among them) read in a
  thread of our process and end it with an *asynchronous* ``pthread_cancel``
  at the end of each page and on ``sane_cancel``. Cancelled inside ``malloc``
  or gettext (when it starts or exits), it leaves a glibc lock taken for good,
  and the process later hangs wherever that lock is next needed (seen: a new
  window's ``setlocale``, the next reader's start). ``_settle`` waits until
  such a thread is blocked in I/O or gone first.
- ``sanei_thread`` also leaves SIGPIPE at its default action (terminate) when
  a reader ends, where Python ignores it: a socket whose peer has gone would
  then kill the whole kiosk (the UI delivering while it scans, a listener
  peer that hangs up) instead of raising an error. Every call into SANE sets
  it back to ignored (``_ignore_sigpipe``).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Mapping, TypeVar

import numpy as np

from drivers.device import Capabilities, Device, DeviceInfo, Driver, Progress, ProgressCallback, Settings, scan_kind
from drivers.errors import (
    CancelledError,
    CoverOpenError,
    DeviceBusyError,
    DisconnectedError,
    DriverError,
    NoDeviceError,
    OutOfPaperError,
    PaperJamError,
)
from drivers.presets import area_matches, format_area
from kiosk.capture import Capture

log = logging.getLogger(__name__)
T = TypeVar("T")

# SANE status strings (sane_strstatus) -> our errors. python-sane gives only the text.
_STATUS: dict[str, tuple[type[DriverError], str, str]] = {
    "Document feeder jammed": (PaperJamError, "the document feeder jammed",
                               "clear the paper path, put the remaining pages back and scan again"),
    "Scanner cover is open": (CoverOpenError, "the scanner cover is open", "close the cover and scan again"),
    "Document feeder out of documents": (OutOfPaperError, "the document feeder is empty",
                                         "load the pages face down into the feeder"),
    "Device busy": (DeviceBusyError, "the scanner is busy or in use by another program",
                    "close other scanning programs, wait a moment and try again"),
    "Operation was canceled": (CancelledError, "the scan was cancelled", "nothing partial was kept"),
    "Error during device I/O": (DisconnectedError, "the scanner stopped answering (I/O error)",
                                "check its cable and power, then scan again"),
    "Access to resource has been denied": (DriverError, "access to the scanner was denied",
                                           "add this user to the 'scanner' group or check the udev rules"),
    "Out of memory": (DriverError, "the scanner ran out of memory", "lower the resolution or the scan area"),
}

_SOURCE_WORDS = {
    "adf": ("adf", "feeder", "duplex"),
    "transparency": ("transparency", "film", "tpu", "slide", "negative", "positive"),
}


def map_error(name: str, error: BaseException) -> DriverError:
    """A python-sane error (message only, no code) as one of our typed errors."""
    text = str(error)
    cls, message, hint = _STATUS.get(text, (DriverError, f"the scanner reported: {text}",
                                            "check the scanner and try again"))
    return cls(f"{name}: {message}", hint)


def source_category(name: str) -> str:
    """'flatbed', 'adf' or 'transparency' for a backend's source name."""
    lower = name.lower()
    for category, words in _SOURCE_WORDS.items():
        if any(word in lower for word in words):
            return category
    return "flatbed"


class SaneDriver(Driver):
    scheme = "sane"
    title = "scanner support"
    module = "sane"
    package = "python-sane"
    extra = "scanner"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._initialised = False

    def _sane(self) -> Any:
        import sane

        with self._lock:
            if not self._initialised:
                sane.init()
                self._initialised = True
        return sane

    def discover(self) -> list[DeviceInfo]:
        sane = self._sane()
        try:
            devices = sane.get_devices()
        except sane._sane.error as error:
            raise map_error("SANE", error) from None
        return [DeviceInfo(uri=f"sane:{dev}", name=f"{vendor} {model}".strip(), kind="scanner", detail=kind)
                for dev, vendor, model, kind in devices]

    def open(self, target: str, options: Mapping[str, Any] | None = None) -> "SaneDevice":
        sane = self._sane()
        info = DeviceInfo(uri=f"sane:{target}", name=f"scanner {target}", kind="scanner")
        try:
            handle = sane.open(target)
        except sane._sane.error as error:
            mapped = map_error(info.name, error)
            if type(mapped) is DriverError:  # "Invalid argument": SANE's answer for an unknown name
                raise NoDeviceError(f"no scanner named {target!r} is attached",
                                    "check that it is plugged in and switched on; 'kiosk devices' lists scanners") from None
            raise mapped from None
        return SaneDevice(info, handle, sane._sane.error)


class SaneDevice(Device):
    """An open SANE handle; all calls on it run on one worker thread."""

    def __init__(self, info: DeviceInfo, handle: Any, sane_error: type[Exception]) -> None:
        super().__init__(info)
        self._handle = handle
        self._error = sane_error
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sane")
        self._closed = False
        self._scanning = threading.Event()
        self._threads_before: set[int] = set()  # this process's threads when the last scan started

    # plumbing ---------------------------------------------------------------
    def _call(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise DisconnectedError(f"{self.info.name}: the scanner was closed", "open it again")

        def call() -> T:
            try:
                return fn()
            finally:
                _ignore_sigpipe()

        return self._worker.submit(call).result()

    def _option(self, name: str) -> Any | None:
        option = self._handle.opt.get(name)
        if option is None:
            return None
        try:
            return getattr(self._handle, name)
        except AttributeError:  # inactive option
            return None

    def _set(self, name: str, value: Any) -> None:
        if name not in self._handle.opt:
            return
        try:
            setattr(self._handle, name, value)
        except AttributeError:
            log.debug("option %s is inactive or read-only here", name)
        except self._error as error:
            raise DriverError(f"{self.info.name}: cannot set {name} to {value!r} ({error})",
                              "choose a value from 'kiosk devices --json' capabilities") from None

    def set_option(self, name: str, value: Any) -> Any:
        """Set a backend-specific option by its python-sane name; returns the value read back."""
        def apply() -> Any:
            if name not in self._handle.opt:
                raise DriverError(f"{self.info.name}: no option {name!r}",
                                  f"options: {', '.join(self._handle.optlist)}")
            self._set(name, value)
            return self._option(name)
        return self._call(apply)

    # interface --------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        return self._call(self._capabilities)

    def _capabilities(self) -> Capabilities:
        opt = self._handle.opt

        def constraint(name: str) -> Any:
            return opt[name].constraint if name in opt else None

        modes = tuple(m for m in ("color", "gray") if any(m[:4] in str(v).lower()
                                                           for v in constraint("mode") or ()))
        depths = tuple(d for d in (constraint("depth") or (8,)) if d in (8, 16))
        res = constraint("resolution")
        if isinstance(res, tuple):
            resolutions = (float(res[0]), float(res[1]))
        elif isinstance(res, list) and res:
            resolutions = (float(min(res)), float(max(res)))
        else:
            resolutions = None
        sources = tuple(dict.fromkeys(source_category(s) for s in constraint("source") or ["Flatbed"]))
        bx, by = constraint("br_x"), constraint("br_y")
        area = (float(bx[1]), float(by[1])) if isinstance(bx, tuple) and isinstance(by, tuple) else None
        return Capabilities(modes=modes, depths=depths, resolutions=resolutions, sources=sources, area_mm=area)

    def configure(self, settings: Settings) -> Settings:
        return self._call(lambda: self._configure(settings))

    def _configure(self, settings: Settings) -> Settings:
        opt = self._handle.opt
        if settings.source:
            names = opt["source"].constraint if "source" in opt else ["Flatbed"]
            matches = [s for s in names if source_category(s) == settings.source]
            if matches:
                self._set("source", matches[0])
            elif settings.source == "adf":
                raise DriverError(f"{self.info.name} has no document feeder", "scan page by page on the flatbed")
            elif settings.source == "transparency":
                log.info("%s has no transparency unit; scanning film on the flatbed", self.info.uri)
                self._set("source", next((s for s in names if source_category(s) == "flatbed"), names[0]))
        if settings.mode:
            wanted = "color" if settings.mode == "color" else "gray"
            for value in opt["mode"].constraint if "mode" in opt else ():
                if wanted[:4] in value.lower():
                    self._set("mode", value)
                    break
        if settings.depth:
            self._set("depth", settings.depth)
        if settings.dpi and "resolution" in opt:
            # SANE_TYPE_FIXED (2) takes a float, SANE_TYPE_INT an int.
            fixed = opt["resolution"].type == 2
            self._set("resolution", float(settings.dpi) if fixed else int(round(settings.dpi)))
        self._set_area(settings.area_mm)
        self.settings = self._read_back(settings)
        return self.settings

    def _set_area(self, area: tuple[float, float, float, float] | None) -> None:
        """The requested area, or the whole bed (a backend's default may be smaller)."""
        opt = self._handle.opt
        if not all(k in opt for k in ("tl_x", "tl_y", "br_x", "br_y")):
            return
        if area is None:
            bx, by = opt["br_x"].constraint, opt["br_y"].constraint
            if not (isinstance(bx, tuple) and isinstance(by, tuple)):
                return
            area = (0.0, 0.0, float(bx[1]), float(by[1]))
        # Top-left to 0 first: a backend may refuse or swap a corner past the current opposite one.
        self._set("tl_x", 0.0)
        self._set("tl_y", 0.0)
        for name, value in zip(("br_x", "br_y", "tl_x", "tl_y"), (*area[2:], *area[:2])):
            self._set(name, float(value))

    def _read_back(self, requested: Settings) -> Settings:
        mode = str(self._option("mode") or "")
        depth = self._option("depth")
        dpi = self._option("resolution")
        source = self._option("source")
        area = tuple(self._option(k) for k in ("tl_x", "tl_y", "br_x", "br_y"))
        effective = requested.merged(
            mode="color" if "col" in mode.lower() else "gray",
            depth=int(depth) if depth else 8,
            dpi=float(dpi) if dpi else None,
            source=source_category(str(source)) if source else "flatbed",
            area_mm=area if all(a is not None for a in area) else None,
        )
        for key in ("mode", "depth", "dpi", "source"):
            want, got = getattr(requested, key), getattr(effective, key)
            if want is not None and want != got and not (key == "source" and want == "transparency"):
                log.info("%s: %s %r requested, the scanner uses %r", self.info.uri, key, want, got)
        if requested.area_mm and effective.area_mm and not area_matches(requested.area_mm, effective.area_mm):
            log.info("%s: scan area %s requested, the scanner uses %s", self.info.uri,
                     format_area(requested.area_mm), format_area(effective.area_mm))
        return effective

    def cancel(self) -> None:
        super().cancel()
        if self._scanning.is_set():
            # No _settle here: this may be the UI thread, and mid-page the reader is
            # writing to its pipe, not starting or ending.
            try:
                self._handle.cancel()
            except Exception:  # noqa: BLE001 - a cancel that races the end of a scan is harmless
                log.debug("sane_cancel failed", exc_info=True)

    def acquire(self, progress: ProgressCallback | None = None) -> Capture:
        self._cancel.clear()
        try:
            return self._call(lambda: self._scan_page(0, progress, feeder=False))
        finally:
            self._end_scan()

    def batch(self, progress: ProgressCallback | None = None) -> Iterator[Capture]:
        """ADF pages until the feeder is empty; a jam mid-batch raises after the pages so far."""
        if self.settings.source != "adf":
            yield self.acquire(progress)
            return
        self._cancel.clear()
        page = 0
        try:
            while True:
                try:
                    capture = self._call(lambda: self._scan_page(page, progress, feeder=True))
                except OutOfPaperError:
                    if page == 0:
                        raise
                    return  # the feeder is empty: the batch is complete
                yield capture
                page += 1
        finally:
            self._end_scan()

    def _end_scan(self) -> None:
        if not self._closed:
            _settle(self._threads_before)
            try:
                self._call(self._handle.cancel)  # ends the batch / resets the backend
            except Exception:  # noqa: BLE001
                log.debug("sane_cancel after scan failed", exc_info=True)

    def _scan_page(self, page: int, progress: ProgressCallback | None, feeder: bool) -> Capture:
        self.check_cancelled()
        dev = self._handle.dev

        failed = False
        got_data = False  # some of the page came

        def on_progress(done: int, total: int) -> None:
            # Called from C inside sane_read: an exception here would segfault.
            nonlocal failed, got_data
            got_data = got_data or done > 0
            if done >= total > 0:
                try:
                    _settle(self._threads_before)  # the backend ends its reader on the next read
                except Exception:  # noqa: BLE001
                    log.debug("waiting for the backend's reader failed", exc_info=True)
            if progress is None or failed or total <= 0:
                return
            try:
                progress(Progress(page, done / total, f"page {page + 1}"))
            except Exception:  # noqa: BLE001
                failed = True  # report once, then stop calling it for this page
                log.warning("progress callback failed", exc_info=True)

        for attempt in (1, 2):
            self._scanning.set()
            self._threads_before = _native_threads()
            got_data = False
            try:
                dev.start()
                expected = dev.get_parameters()
                data, width, height, samples, sample_size = dev.snap(feeder, True, on_progress)
                break
            except self._error as error:
                mapped = map_error(self.info.name, error)
                if self._cancel.is_set():
                    self.check_cancelled()
                if isinstance(mapped, CancelledError) and not got_data and attempt == 1:
                    # Nobody cancelled this scan and no line of it came: the backend was still ending
                    # the one cancelled before (slow on a busy machine). Once it has, start again.
                    # (A cancel from the scanner's own button comes mid-page, and is reported.)
                    log.info("%s: the previous scan was still being cancelled; starting again", self.info.uri)
                    _settle(self._threads_before)
                    continue
                raise mapped from None
            finally:
                self._scanning.clear()
        self.check_cancelled()
        lines = expected[2][1]
        if not data or (lines > 0 and height < lines):
            raise DisconnectedError(f"{self.info.name}: the scan stopped after {height} of {lines} lines",
                                    "the partial page was discarded; scan again")
        dtype = np.uint16 if sample_size == 2 else np.uint8
        pixels = np.frombuffer(data, dtype).reshape(height, width, samples)
        pixels = pixels[:, :, 0] if samples == 1 else pixels
        effective = self.settings
        depth = 16 if sample_size == 2 else 8
        return Capture(
            kind=scan_kind(effective, depth),
            pixels=np.ascontiguousarray(pixels),
            bits_stored=depth,
            dpi=effective.dpi,
            index=page,
            source=self.info.uri,
            metadata={"source": effective.source, "mode": effective.mode, "depth": depth},
        )

    def close(self) -> None:
        if self._closed:
            return
        self.cancel()  # a scan in progress would otherwise hold the worker until the page is done
        try:
            self._worker.submit(self._handle.close).result()
        except Exception:  # noqa: BLE001 - closing a handle that failed is best effort
            log.debug("closing %s failed", self.info.uri, exc_info=True)
        self._closed = True
        self._worker.shutdown(wait=False)


SETTLE_TIMEOUT = 1.0  # seconds; a reader that takes longer is cancelled anyway


def _ignore_sigpipe() -> None:
    """SIGPIPE ignored again, as Python has it (through libc: this may be a worker thread,
    where ``signal.signal`` cannot be called)."""
    _libc().signal(signal.SIGPIPE, int(signal.SIG_IGN))


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    return libc


def _native_threads() -> set[int]:
    """This process's thread ids (Linux); empty where /proc is not there."""
    try:
        return {int(tid) for tid in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def _settle(before: set[int]) -> None:
    """Wait until threads started since ``before`` by a backend (not by Python) are gone or blocked in I/O.

    Blocked in ``write`` to its pipe, say, a reader holds no lock and can be
    cancelled safely; running, or waiting on a futex, it may be inside
    ``malloc`` (seen: killed on its way out while holding malloc's free-list lock).
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT
    ours = {thread.native_id for thread in threading.enumerate()}
    while time.monotonic() < deadline:
        if all(_blocked_in_io_or_gone(tid) for tid in _native_threads() - before - ours):
            return
        time.sleep(0.001)


def _blocked_in_io_or_gone(tid: int) -> bool:
    try:
        with open(f"/proc/self/task/{tid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
        with open(f"/proc/self/task/{tid}/wchan", "rb") as wchan:
            waiting_in = wchan.read()
    except (OSError, IndexError):
        return True
    return state in (b"S", b"D") and b"futex" not in waiting_in
