"""Tiny video files made with ffmpeg (320x240, 2 s, a keyframe every 10 frames), clip captures of them,
and ffprobe/framemd5 readings of what the kiosk stores (the real peers of the video tests)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np

from kiosk.capture import Capture, EncodedFormat, SourceKind
from tests.support.peers import require_binary

SIZE, RATE, SECONDS, GOP = "320x240", 25, 2, 10
FRAMES = RATE * SECONDS
# name -> (file name, ffmpeg output options)
X265 = ["-x265-params", "log-level=error:open-gop=0"]  # closed GOPs: IDR keyframes a clip can be split at
KINDS = {
    "h264-mp4": ("h264.mp4", ["-c:v", "libx264", "-profile:v", "high", "-level", "4.1", "-pix_fmt", "yuv420p"]),
    "h264-raw": ("h264.h264", ["-c:v", "libx264", "-profile:v", "high", "-level", "4.1", "-pix_fmt", "yuv420p"]),
    "h264-mkv": ("h264.mkv", ["-c:v", "libx264", "-profile:v", "high", "-pix_fmt", "yuv420p"]),
    "hevc-mp4": ("hevc.mp4", ["-c:v", "libx265", "-pix_fmt", "yuv420p", *X265]),
    "hevc10-mp4": ("hevc10.mp4", ["-c:v", "libx265", "-pix_fmt", "yuv420p10le", *X265]),
    # x265's default: open GOPs, keyframes that are CRA pictures, whose leading pictures need the GOP before
    "hevc-open-gop": ("hevc-open.mp4", ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-x265-params", "log-level=error"]),
    "h264-444": ("h264-444.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv444p"]),
    "mjpeg": ("mjpeg.mkv", ["-c:v", "mjpeg", "-pix_fmt", "yuvj420p"]),
}


def make_clip(folder: Path, kind: str) -> Path:
    """The test pattern as ``kind`` (a key of ``KINDS``) in ``folder``."""
    name, options = KINDS[kind]
    path = folder / name
    subprocess.run([require_binary("ffmpeg"), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={SIZE}:rate={RATE}", "-t", str(SECONDS), "-g", str(GOP), *options, str(path)],
                   check=True)
    return path


def with_parameter_sets_once(source: Path, target: Path) -> Path:
    """``source`` (raw H.264) with its SPS and PPS only before the first picture, as some encoders write
    raw streams: a part starting later decodes only if the kiosk puts them in front."""
    data = source.read_bytes()
    starts = [m.start() for m in re.finditer(b"\x00\x00\x01", data)]
    out, seen = bytearray(), set()
    for start, end in zip(starts, starts[1:] + [len(data)]):
        unit = data[start:end]
        kind = unit[3] & 0x1F
        if kind in (7, 8) and kind in seen:
            continue
        seen.add(kind)
        out += unit
    target.write_bytes(bytes(out))
    return target


def clip_capture(path: Path, kind: SourceKind = SourceKind.VIDEO_FRAME, **metadata: object) -> Capture:
    """A clip capture of ``path`` as the recorder and the importer make them (the thumbnail: any pixels)."""
    from kiosk.video.probe import probe

    facts = probe(path)
    return Capture(kind, pixels=np.zeros((facts.height, facts.width, 3), np.uint8), encoded_path=path,
                   encoded_format=EncodedFormat.VIDEO, video=facts, frame_rate=facts.frame_rate,
                   source=str(path), metadata=dict(metadata))


def ffprobe(path: Path, fmt: str | None = None) -> dict:
    """codec_name, profile, level, width, height and nb_read_frames (frames decoded) of the first video stream."""
    result = subprocess.run([require_binary("ffprobe"), "-v", "error", *(["-f", fmt] if fmt else []), "-count_frames",
                             "-select_streams", "v:0", "-show_entries",
                             "stream=codec_name,profile,level,width,height,nb_read_frames", "-of", "json", str(path)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)["streams"][0]


def framemd5(path: Path, fmt: str | None = None) -> list[str]:
    """The MD5 of each decoded picture, in order: equal lists prove the pictures are the source's."""
    result = subprocess.run([require_binary("ffmpeg"), "-nostdin", "-v", "error", *(["-f", fmt] if fmt else []),
                             "-i", str(path), "-map", "0:v:0", "-f", "framemd5", "-"],
                            capture_output=True, text=True, check=True)
    return [line.rsplit(",", 1)[1].strip() for line in result.stdout.splitlines() if line and not line.startswith("#")]


def raw_format(codec: str) -> str:
    """ffmpeg's demuxer for a raw stream of ``codec`` (ffprobe cannot always guess it from the bytes)."""
    return {"h264": "h264", "hevc": "hevc"}[codec]
