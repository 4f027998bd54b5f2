"""Video test material made by ffmpeg, and clip captures of it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from kiosk.capture import Capture, EncodedFormat, SourceKind

FFMPEG = "/usr/bin/ffmpeg"
FFPROBE = "/usr/bin/ffprobe"

#: ffmpeg output options per kind of test file.
KINDS = {
    "h264": ["-c:v", "libx264", "-profile:v", "high", "-level", "4.1", "-pix_fmt", "yuv420p", "-g", "10"],
    "h264-444": ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-g", "10"],
    "h264-10bit": ["-c:v", "libx264", "-pix_fmt", "yuv420p10le", "-g", "10"],
    "hevc": ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-x265-params", "log-level=error:keyint=10"],
    "hevc-10bit": ["-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=error:keyint=10"],
    "vp9": ["-c:v", "libvpx-vp9", "-g", "10", "-deadline", "realtime"],
}


def make_video(path: Path, kind: str = "h264", seconds: float = 1.0, size: str = "320x240", rate: int = 25) -> Path:
    """A test-pattern clip of ``kind`` (see ``KINDS``) at ``path`` (its suffix picks the container)."""
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
                    "-t", str(seconds), *KINDS[kind], str(path)], check=True)
    return path


def clip_of(path: Path, kind: SourceKind = SourceKind.VIDEO_FRAME) -> Capture:
    """A clip capture of the video file at ``path`` (a black first frame stands for the thumbnail)."""
    from kiosk.video.probe import probe

    facts = probe(path)
    return Capture(kind=kind, pixels=np.zeros((facts.height, facts.width, 3), np.uint8), source=str(path),
                   frame_rate=facts.frame_rate, encoded_path=Path(path), encoded_format=EncodedFormat.VIDEO,
                   video=facts, metadata={"clip": True})
