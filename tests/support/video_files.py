"""Tiny video files made by ffmpeg (320x240, 25 fps, 2-3 s) and ffmpeg/ffprobe's view of a file, for the
video tests: what the kiosk reads, passes through, transcodes and trims is checked against a real peer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from tests.support.peers import require_binary

SIZE, RATE = "320x240", 25
# name -> (file name, ffmpeg output options); every one holds 2 s (50 frames) of testsrc2 unless said.
KINDS = {
    # H.264 High 4.1, a keyframe a second, B-frames in a pyramid (trims must cope), and an audio track.
    "h264": ("h264.mp4", ["-c:v", "libx264", "-profile:v", "high", "-level", "4.1", "-pix_fmt", "yuv420p",
                          "-g", "25", "-x264-params", "b-adapt=0:bframes=3:b-pyramid=normal:scenecut=0",
                          "-c:a", "aac", "-shortest"]),
    # The same without B-frames: decode order is display order.
    "h264_nob": ("h264-nob.mp4", ["-c:v", "libx264", "-profile:v", "high", "-pix_fmt", "yuv420p", "-g", "25",
                                  "-bf", "0", "-x264-params", "scenecut=0"]),
    "h444": ("h444.mp4", ["-c:v", "libx264", "-profile:v", "high444", "-pix_fmt", "yuv444p"]),
    "h10": ("h10.mp4", ["-c:v", "libx264", "-profile:v", "high10", "-pix_fmt", "yuv420p10le"]),
    "hevc": ("hevc.mp4", ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-tag:v", "hvc1",
                          "-x265-params", "log-level=error"]),
    "hevc10": ("hevc10.mp4", ["-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-tag:v", "hvc1",
                              "-x265-params", "log-level=error"]),
    # Interlaced (top field first), as a broadcast or SD capture card's recording.
    "interlaced": ("interlaced.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-flags", "+ildct+ilme",
                                      "-x264-params", "tff=1"]),
    "vp9": ("vp9.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"]),
    "mov": ("clip.mov", ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
    "mkv": ("clip.mkv", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "matroska"]),
    "mpeg4": ("mpeg4.avi", ["-c:v", "mpeg4", "-q:v", "5"]),
}


def make_video(folder: Path, kind: str, seconds: float = 2.0, size: str = SIZE, rate: int = RATE,
               name: str | None = None) -> Path:
    """One test file of ``KINDS[kind]`` in ``folder``."""
    ffmpeg = require_binary("ffmpeg")
    file_name, options = KINDS[kind]
    path = folder / (name or file_name)
    audio = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"] if "-c:a" in options else []
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate={rate}", *audio, "-t", str(seconds), *options, str(path)], check=True)
    return path


def make_audio_only(path: Path) -> Path:
    ffmpeg = require_binary("ffmpeg")
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=d=2",
                    "-c:a", "aac", str(path)], check=True)
    return path


def truncated(source: Path, path: Path, keep: float = 0.45) -> Path:
    """The first ``keep`` of ``source``'s bytes: a copy cut short."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def faststart(source: Path, path: Path) -> Path:
    """``source`` remuxed with its index first (a file cut short then keeps its first frames readable)."""
    ffmpeg = require_binary("ffmpeg")
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-c", "copy",
                    "-movflags", "+faststart", str(path)], check=True)
    return path


def turned(source: Path, path: Path, degrees: int = 90) -> Path:
    """``source`` with a display matrix telling players to turn it ``degrees`` counterclockwise (what phones
    write for portrait video), its stream copied."""
    ffmpeg = require_binary("ffmpeg")
    common = [ffmpeg, "-nostdin", "-loglevel", "error", "-y"]
    done = subprocess.run([*common, "-display_rotation:v:0", str(degrees), "-i", str(source), "-c", "copy", str(path)],
                          capture_output=True)
    if done.returncode:  # FFmpeg before 6.0: the rotate tag
        subprocess.run([*common, "-i", str(source), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(path)],
                       check=True)
    return path


def framemd5(path: Path) -> list[str]:
    """ffmpeg's MD5 of every decoded frame of the first video stream, in display order."""
    ffmpeg = require_binary("ffmpeg")
    out = subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "framemd5",
                          "-"], capture_output=True, text=True, check=True).stdout
    return [line.rsplit(",", 1)[1].strip() for line in out.splitlines() if line and not line.startswith("#")]


def ffmpeg_first_frame(path: Path, height: int, width: int) -> np.ndarray:
    """The first frame as ffmpeg shows it (turned upright as its display matrix says), RGB, ``height`` x ``width``."""
    ffmpeg = require_binary("ffmpeg")
    raw = subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def ffprobe(path: Path) -> dict:
    """ffprobe's streams of ``path`` (frames counted by decoding) and its video packets' key flags."""
    binary = require_binary("ffprobe")
    out = subprocess.run([binary, "-v", "error", "-count_frames", "-show_streams", "-show_entries",
                          "packet=pts_time,flags,stream_index", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def video_stream(info: dict) -> dict:
    [stream] = [s for s in info["streams"] if s["codec_type"] == "video"]
    return stream


def key_times(info: dict) -> list[float]:
    """The presentation times of the video stream's keyframes."""
    index = video_stream(info)["index"]
    return sorted(float(p["pts_time"]) for p in info["packets"] if p["stream_index"] == index and "K" in p["flags"])
