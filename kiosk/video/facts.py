"""What is known of a video clip: its stream's codec, profile, level, size, rate and length.

No PyAV here: captures, sessions and the UI carry these facts without decoding anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from kiosk.errors import KioskError


class VideoError(KioskError):
    """A video file or recording that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class VideoFacts:
    """One video stream, as ``kiosk.video.probe.probe`` read it.

    ``codec``: FFmpeg's name ("h264", "hevc", "vp9", "mjpeg" ...). ``profile``: FFmpeg's profile name
    ("High", "Main", "Main 10", "High 4:4:4 Predictive" ...), "" when unknown. ``level``: as the
    stream codes it (H.264: 41 for 4.1; HEVC: 30 x the level, 153 for 5.1), 0 when unknown.
    ``pix_fmt``: FFmpeg's pixel format ("yuv420p", "yuvj420p", "yuv420p10le", "yuv444p" ...).
    ``frames``: frames counted in the stream; ``duration`` in seconds; ``keyframes``: the frame
    numbers (0-based) that decoding can start at, in order (the first is 0 for a usable clip).
    ``container``: FFmpeg's format name of the file ("mov,mp4,m4a,3gp,3g2,mj2", "h264", "matroska,webm").
    """

    codec: str
    width: int
    height: int
    frame_rate: float
    frames: int
    duration: float
    profile: str = ""
    level: int = 0
    pix_fmt: str = "yuv420p"
    bit_rate: int = 0
    interlaced: bool = False
    keyframes: tuple[int, ...] = (0,)
    container: str = ""

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def describe(self) -> str:
        """A short line for people: "H.264 High 4.1, 1920x1080, 30 fps, 12.0 s"."""
        names = {"h264": "H.264", "hevc": "HEVC", "vp9": "VP9", "vp8": "VP8", "av1": "AV1", "mjpeg": "MJPEG",
                 "mpeg2video": "MPEG-2", "mpeg4": "MPEG-4 Part 2"}
        level = ""
        if self.level > 0:
            level = f" {self.level / 30:g}" if self.codec == "hevc" else f" {self.level / 10:g}"
        return (f"{names.get(self.codec, self.codec)} {self.profile}{level}".replace("  ", " ").strip()
                + f", {self.size}, {self.frame_rate:g} fps, {self.duration:.1f} s")

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["keyframes"] = list(self.keyframes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "VideoFacts":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["keyframes"] = tuple(values.get("keyframes", (0,)))
        return cls(**values)
