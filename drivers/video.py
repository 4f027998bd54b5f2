"""Capture cards, cameras, streams and video files through OpenCV (``pip install kiosk[video]``).

Targets: a V4L2 device (``/dev/video0``, a stable ``/dev/v4l/by-id/...`` link
or an index ``0``), a stream URL (``tcp://``, ``rtsp://``, ``http://`` ...) or a
video file. OpenCV cannot list devices, so discovery reads
``/sys/class/video4linux`` and ``/dev/v4l/by-id``. Settings are applied FOURCC
first (MJPG unlocks high resolutions on USB cards), then size and rate, and
read back. ``isOpened()`` stays True when a stream dies, so liveness comes
from frames actually arriving (see ``LiveDevice``).

Coded sources are read raw: an MJPEG source's frames keep their JPEG bytes (FFmpeg backend
``CAP_PROP_FORMAT = -1``; V4L2 ``CAP_PROP_CONVERT_RGB = 0``), decoded here with ``cv2.imdecode``
for the preview, so that stills keep the card's JPEG; an H.264 stream or file gives its Annex B
access units (FFmpeg backend), decoded here with PyAV, so that a recording can keep them as they are.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from drivers.device import Capabilities, DeviceInfo, Driver, Settings
from drivers.errors import DeviceBusyError, DisconnectedError, DriverError, NoDeviceError
from drivers.live import Coded, LiveDevice
from kiosk.jpeg import JpegError, with_huffman_tables
from kiosk.video.facts import VideoFacts

log = logging.getLogger(__name__)

SYS_V4L = Path("/sys/class/video4linux")
BY_ID = Path("/dev/v4l/by-id")

# Sources that deliver every pixel as it was: V4L2 raw pixel formats and lossless codecs.
LOSSLESS_FOURCCS = {"YUYV", "YUY2", "UYVY", "YVYU", "NV12", "NV21", "NV16", "YU12", "YV12", "I420", "IYUV",
                    "RGB3", "BGR3", "RGB4", "BGR4", "RGB", "BGR", "GREY", "Y8", "Y16", "Y10", "Y12",
                    "FFV1", "HFYU", "FFVH", "UTVIDEO", "ULRG", "ULRA", "ULY0", "ULY2", "ULY4"}
# Lossy codecs with a DICOM defined term for Lossy Image Compression Method (PS3.3 C.7.6.1.1.5).
LOSSY_METHODS = {"MJPG": "ISO_10918_1", "JPEG": "ISO_10918_1", "MJPEG": "ISO_10918_1",
                 "H264": "ISO_14496_10", "AVC1": "ISO_14496_10", "X264": "ISO_14496_10",
                 "HEVC": "ISO_23008_2", "H265": "ISO_23008_2", "HVC1": "ISO_23008_2", "HEV1": "ISO_23008_2",
                 "MPG2": "ISO_13818_2", "MPEG": "ISO_13818_2", "MP2V": "ISO_13818_2"}
# Codecs read raw (their coded frames kept): by FOURCC, as OpenCV names them.
RAW_CODECS = {"MJPG": "mjpeg", "JPEG": "mjpeg", "MJPEG": "mjpeg", "H264": "h264", "AVC1": "h264", "X264": "h264"}


def _cv2() -> Any:
    """OpenCV, imported on first use, its own warnings kept off the user's terminal."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2


def _have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def fourcc_text(code: float) -> str:
    value = int(code)
    return "".join(chr((value >> 8 * i) & 0xFF) for i in range(4)).strip("\x00") if value > 0 else ""


def lossy_history(fourcc: str, bitrate_kbps: float = 0.0, width: int = 0, height: int = 0,
                  fps: float | None = None) -> list[list]:
    """The lossy step a source's codec put its frames through, as [ratio, method] (either may be None).

    A codec not known to be lossless counts as lossy: saying so of lossless
    frames harms nobody, calling lossy frames lossless misleads a reader.
    The ratio (RGB size over coded size) is estimated from the bit rate when
    the source reports one.
    """
    code = fourcc.strip().upper()
    if code in LOSSLESS_FOURCCS:
        return []
    ratio = None
    if bitrate_kbps > 0 and width and height and fps:
        ratio = round(width * height * 3 * 8 * fps / (bitrate_kbps * 1000), 2)
    return [[ratio, LOSSY_METHODS.get(code)]]


def v4l2_devices(sys_dir: Path = SYS_V4L, by_id: Path = BY_ID) -> list[DeviceInfo]:
    """V4L2 capture nodes (index 0 of each device; the others carry metadata), stable names first."""
    links: dict[str, str] = {}
    if by_id.is_dir():
        for link in sorted(by_id.iterdir()):
            links.setdefault(os.path.realpath(link), str(link))
    found = []
    if not sys_dir.is_dir():
        return found
    for node in sorted(sys_dir.glob("video*"), key=lambda p: int(p.name[5:] or 0)):
        index_file = node / "index"
        if index_file.is_file() and index_file.read_text().strip() not in ("", "0"):
            continue
        dev = f"/dev/{node.name}"
        name_file = node / "name"
        name = name_file.read_text().strip() if name_file.is_file() else node.name
        found.append(DeviceInfo(uri=f"video:{links.get(dev, dev)}", name=name, kind="camera", detail=dev))
    return found


class VideoDriver(Driver):
    scheme = "video"
    title = "video capture support"
    module = "cv2"
    package = "opencv-python-headless"
    extra = "video"

    def discover(self) -> list[DeviceInfo]:
        return v4l2_devices()

    def open(self, target: str, options: Mapping[str, Any] | None = None) -> "VideoDevice":
        options = dict(options or {})
        device = VideoDevice(target, stall_timeout=float(options.get("stall_timeout", 1.5)))
        device._open_source()
        return device


class VideoDevice(LiveDevice):
    """One OpenCV capture read by the LiveDevice thread."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        self.target = target
        self.is_url = "://" in target
        self.is_device = target.isdigit() or target.startswith("/dev/")
        name = target if self.is_url or self.is_device else Path(target).name
        super().__init__(DeviceInfo(uri=f"video:{target}", name=f"video {name}", kind="camera"), **kwargs)
        self.ends = not (self.is_url or self.is_device)
        self._cap: Any = None
        self._next = 0.0
        self._decoder: Any = None  # PyAV's H.264 decoder, for the preview of a raw H.264 source
        self._drained: list[np.ndarray] = []  # its last pictures, held back by B-frame reordering

    def _open_source(self) -> None:
        cv2 = _cv2()

        if self._cap is not None:
            return
        if self.is_url:
            # Without these a dead stream blocks open/read for 30 s.
            read_ms = int(max(0.5, self.stall_timeout) * 1000)
            cap = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_ms])
        elif self.is_device:
            path = f"/dev/video{self.target}" if self.target.isdigit() else self.target
            if not os.path.exists(path):
                raise NoDeviceError(f"no video device {path}",
                                    "check that the capture card is plugged in; 'kiosk devices' lists cameras")
            cap = cv2.VideoCapture(os.path.realpath(path), cv2.CAP_V4L2)
            if not cap.isOpened():
                raise DeviceBusyError(f"{path} cannot be opened: it is in use by another program or not a camera",
                                      "close other video programs, or check the permissions ('video' group)")
        else:
            if not os.path.isfile(self.target):
                raise NoDeviceError(f"no video file {self.target!r}", "check the path")
            cap = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            what = "stream" if self.is_url else "video file"
            raise NoDeviceError(f"the {what} {self.target} cannot be opened",
                                "check that it is running and the address is right" if self.is_url
                                else "check that it is a video file ffmpeg can read")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.frame_rate = fps if 1 <= fps <= 240 else None
        self._cap = cap
        self._next = time.monotonic()
        self._note_codec()
        self._read_raw()

    def _note_codec(self) -> None:
        """Record the lossy step of what the source delivers now (its codec or pixel format)."""
        cv2 = _cv2()

        cap = self._cap
        self.lossy_history = lossy_history(
            fourcc_text(cap.get(cv2.CAP_PROP_FOURCC)), cap.get(cv2.CAP_PROP_BITRATE),
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), self.frame_rate)

    def _read_raw(self) -> None:
        """Read MJPEG (any backend) and H.264 (FFmpeg backend: streams, files) raw; others decoded by OpenCV."""
        cv2 = _cv2()

        codec = RAW_CODECS.get(fourcc_text(self._cap.get(cv2.CAP_PROP_FOURCC)).upper(), "")
        if self.is_device:
            # V4L2 hands over the MJPEG buffer as it came; other formats it converts (after a FOURCC
            # change too: the setting stays with the capture).
            raw = codec == "mjpeg" and self._cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)
            if not raw:
                self._cap.set(cv2.CAP_PROP_CONVERT_RGB, 1)
            codec = codec if raw else ""
        elif codec and (codec == "h264" and not _have_pyav() or not self._cap.set(cv2.CAP_PROP_FORMAT, -1)):
            codec = ""
        if codec != self.encoded_codec:
            self.encoded_codec, self.stream_facts = codec, None
        self._decoder = None

    def _close_source(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._decoder, self._drained = None, []

    def _read(self) -> np.ndarray | Coded | None:
        cv2 = _cv2()

        while self._cap is not None and not self._stop.is_set():
            if self._drained:
                return self._drained.pop(0)
            ok, frame = self._cap.read()
            if not ok or frame is None:
                self._drained = self._drain()
                if self._drained:
                    continue
                return None
            if self.ends and self.frame_rate:
                # Files decode far faster than real time: pace them like the live source they stand for.
                self._next += 1.0 / self.frame_rate
                delay = self._next - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if not self.encoded_codec:
                return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            # A frame that does not decode (a torn packet) is skipped; a source sending only such
            # frames is reported as stalled.
            picture = self._jpeg(frame) if self.encoded_codec == "mjpeg" else self._h264(frame)
            if picture is not None:
                return picture
        return None

    def _jpeg(self, raw: np.ndarray) -> Coded | None:
        cv2 = _cv2()

        try:
            data = with_huffman_tables(raw.tobytes())
        except JpegError:
            return None
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
        return None if pixels is None else Coded(pixels, data)

    def _drain(self) -> list[np.ndarray]:
        """The pictures the H.264 decoder still holds at the end of the stream (its reordering delay)."""
        import av

        decoder, self._decoder = self._decoder, None
        if decoder is None:
            return []
        try:
            return [picture.to_ndarray(format="rgb24") for picture in decoder.decode(None)]
        except av.FFmpegError:
            return []

    def _h264(self, raw: np.ndarray) -> Coded | np.ndarray | None:
        """Decode one access unit; it travels with its picture only while the decoder gives one picture
        per unit, in order (no B-frame reordering): a recording then keeps the units in arrival order."""
        import av

        cv2 = _cv2()

        if self._decoder is None:
            self._decoder = av.CodecContext.create("h264", "r")  # slice threads: no frame of delay
        data = raw.tobytes()
        try:
            pictures = self._decoder.decode(av.Packet(data))
        except av.FFmpegError:
            return None  # joined mid-stream: nothing decodes before the first keyframe
        if not pictures:
            return None
        picture = pictures[-1]
        if self.stream_facts is None:
            ctx = self._decoder
            self.stream_facts = VideoFacts(
                codec="h264", width=picture.width, height=picture.height, frame_rate=self.frame_rate or 0.0,
                frames=0, duration=0.0, profile=ctx.profile or "", level=max(0, ctx.level or 0),
                pix_fmt=picture.format.name, interlaced=bool(picture.interlaced_frame))
        pixels = picture.to_ndarray(format="rgb24")
        if self._decoder.has_b_frames or len(pictures) != 1:
            return pixels
        keyframe = bool(self._cap.get(cv2.CAP_PROP_LRF_HAS_KEY_FRAME))
        return Coded(pixels, data, keyframe)

    def capabilities(self) -> Capabilities:
        settings = self._current()
        size = ((settings.width, settings.height),) if settings.width else ()
        return Capabilities(frame_sizes=size, frame_rates=(settings.fps,) if settings.fps else (),
                            pixel_formats=(settings.fourcc,) if settings.fourcc else (), preview=True)

    def _current(self) -> Settings:
        cv2 = _cv2()

        if self._cap is None:
            raise DisconnectedError(f"{self.info.name} is not open", "open it again")
        cap = self._cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        return Settings(width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or None,
                        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or None,
                        fps=fps if 1 <= fps <= 240 else None,
                        fourcc=fourcc_text(cap.get(cv2.CAP_PROP_FOURCC)) or None)

    def configure(self, settings: Settings) -> Settings:
        """FOURCC, then size, then rate (the order V4L2 drivers need); returns what the source uses."""
        cv2 = _cv2()

        if self._thread is not None:
            raise DriverError(f"{self.info.name}: settings cannot change while the preview runs",
                              "stop the preview, change the settings, start it again")
        self._open_source()
        cap = self._cap
        if settings.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*settings.fourcc[:4].ljust(4)))
        if settings.width and settings.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, settings.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, settings.height)
        if settings.fps:
            cap.set(cv2.CAP_PROP_FPS, settings.fps)
        self.settings = self._current()
        if self.settings.fps:
            self.frame_rate = self.settings.fps
        self._note_codec()
        self._read_raw()
        return self.settings
