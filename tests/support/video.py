"""Tiny video files made by ffmpeg (testsrc2, 320x240, 25 fps, 2 s unless asked), clip captures of them, and
ffmpeg/ffprobe's view of a file: what the kiosk records, reads, passes through, transcodes, trims and stores is
checked against a real peer. ``stall_encoder`` makes a recorder fall behind, as on a loaded machine."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np

from kiosk.capture import Capture, EncodedFormat, SourceKind
from tests.support.peers import require_binary

SIZE, RATE, SECONDS, GOP = "320x240", 25, 2, 10
FRAMES = RATE * SECONDS
_H264_HIGH_41 = ["-c:v", "libx264", "-profile:v", "high", "-level", "4.1", "-pix_fmt", "yuv420p"]
_X265_CLOSED = ["-x265-params", "log-level=error:open-gop=0"]  # closed GOPs: IDR keyframes a clip can be split at
_MJPEG = ["-c:v", "mjpeg", "-q:v", "5", "-pix_fmt", "yuvj420p"]
#: kind -> (file name, ffmpeg output options).
KINDS = {
    # Clips as the recorder writes them and video objects hold them: a keyframe every GOP frames, GOPs closed.
    "h264-mp4": ("h264.mp4", [*_H264_HIGH_41, "-g", str(GOP)]),
    "h264-raw": ("h264.h264", [*_H264_HIGH_41, "-g", str(GOP)]),  # a raw Annex B stream
    "h264-mkv": ("h264.mkv", ["-c:v", "libx264", "-profile:v", "high", "-pix_fmt", "yuv420p", "-g", str(GOP),
                              "-f", "matroska"]),  # Matroska by its bytes: it may be named without a suffix
    "hevc-mp4": ("hevc.mp4", ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-g", str(GOP), *_X265_CLOSED]),
    "hevc10-mp4": ("hevc10.mp4", ["-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-g", str(GOP), *_X265_CLOSED]),
    # x265's default: open GOPs, keyframes that are CRA pictures, whose leading pictures need the GOP before
    "hevc-open-gop": ("hevc-open.mp4", ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-g", str(GOP),
                                        "-x265-params", "log-level=error"]),
    # Files as cameras, phones and editors write them (what the importer takes in).
    # H.264 High 4.1, a keyframe a second, B-frames in a pyramid (trims must cope), and an AAC audio track.
    "h264-bframes": ("h264-bframes.mp4", [*_H264_HIGH_41, "-g", "25",
                                          "-x264-params", "b-adapt=0:bframes=3:b-pyramid=normal:scenecut=0",
                                          "-c:a", "aac", "-shortest"]),
    # The same without B-frames (and audio): decode order is display order.
    "h264-no-bframes": ("h264-no-bframes.mp4", ["-c:v", "libx264", "-profile:v", "high", "-pix_fmt", "yuv420p",
                                                "-g", "25", "-bf", "0", "-x264-params", "scenecut=0"]),
    "h264-444": ("h264-444.mp4", ["-c:v", "libx264", "-profile:v", "high444", "-pix_fmt", "yuv444p"]),
    "h264-10bit": ("h264-10bit.mp4", ["-c:v", "libx264", "-profile:v", "high10", "-pix_fmt", "yuv420p10le"]),
    # Interlaced (top field first), as a broadcast or SD capture card's recording.
    "h264-interlaced": ("h264-interlaced.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-flags", "+ildct+ilme",
                                                "-x264-params", "tff=1"]),
    "h264-mov": ("h264.mov", ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
    # HEVC tagged hvc1 (as Apple devices write it), x265's own GOPs.
    "hevc-hvc1": ("hevc-hvc1.mp4", ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-tag:v", "hvc1",
                                    "-x265-params", "log-level=error"]),
    "hevc10-hvc1": ("hevc10-hvc1.mp4", ["-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-tag:v", "hvc1",
                                        "-x265-params", "log-level=error"]),
    "vp9": ("vp9.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"]),
    "mpeg4": ("mpeg4.avi", ["-c:v", "mpeg4", "-q:v", "5"]),
    # Live sources' material, served in a loop by tests.support.sources.Stream (make them at rate=30).
    "mjpeg": ("mjpeg.mkv", _MJPEG),  # a capture card's MJPEG
    "mjpeg-k3": ("mjpeg-k3.mkv", [*_MJPEG, "-huffman", "default"]),  # coded with the T.81 K.3 tables, as cameras do
    "h264-stream": ("h264-stream.mkv", ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-bf", "0",
                                        "-g", "15", "-pix_fmt", "yuv420p"]),  # no B-frames: a recorder remuxes it
    "h264-stream-bframes": ("h264-stream-bframes.mkv", ["-c:v", "libx264", "-preset", "veryfast", "-profile:v",
                                                        "high", "-bf", "2", "-g", "15", "-pix_fmt", "yuv420p"]),
}


def make_video(folder: Path, kind: str = "h264-mp4", seconds: float = SECONDS, size: str = SIZE, rate: int = RATE,
               name: str | None = None) -> Path:
    """ffmpeg's test pattern as ``kind`` (a key of ``KINDS``) in ``folder``, named ``name`` or as ``KINDS`` says
    (the name's suffix picks the container unless the kind's options do); with a 440 Hz tone if the kind has audio."""
    file_name, options = KINDS[kind]
    path = Path(folder) / (name or file_name)
    audio = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"] if "-c:a" in options else []
    subprocess.run([require_binary("ffmpeg"), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate={rate}", *audio, "-t", str(seconds), *options, str(path)], check=True)
    return path


def make_audio_only(path: Path) -> Path:
    """2 s of AAC and no video stream."""
    subprocess.run([require_binary("ffmpeg"), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=d=2",
                    "-c:a", "aac", str(path)], check=True)
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


def truncated(source: Path, path: Path, keep: float = 0.45) -> Path:
    """The first ``keep`` of ``source``'s bytes: a copy cut short."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def faststart(source: Path, path: Path) -> Path:
    """``source`` remuxed with its index first (a file cut short then keeps its first frames readable)."""
    subprocess.run([require_binary("ffmpeg"), "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-c", "copy",
                    "-movflags", "+faststart", str(path)], check=True)
    return path


def turned(source: Path, path: Path, degrees: int = 90) -> Path:
    """``source`` with a display matrix telling players to turn it ``degrees`` counterclockwise (what phones
    write for portrait video), its stream copied."""
    common = [require_binary("ffmpeg"), "-nostdin", "-loglevel", "error", "-y"]
    done = subprocess.run([*common, "-display_rotation:v:0", str(degrees), "-i", str(source), "-c", "copy", str(path)],
                          capture_output=True)
    if done.returncode:  # FFmpeg before 6.0: the rotate tag
        subprocess.run([*common, "-i", str(source), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(path)],
                       check=True)
    return path


def clip_of(path: Path, kind: SourceKind = SourceKind.VIDEO_FRAME, **metadata: object) -> Capture:
    """A clip capture of the video file at ``path`` as the recorder and the importer make them (the thumbnail:
    black pixels; ``kiosk.video.streams.clip_capture`` decodes the real first frame)."""
    from kiosk.video.probe import probe

    path = Path(path)
    facts = probe(path)
    return Capture(kind, pixels=np.zeros((facts.height, facts.width, 3), np.uint8), encoded_path=path,
                   encoded_format=EncodedFormat.VIDEO, video=facts, frame_rate=facts.frame_rate,
                   source=str(path), metadata=dict(metadata))


def _input(path: Path, fmt: str | None) -> list[str]:
    """ffmpeg/ffprobe's input options for ``path``: ``fmt`` names the demuxer of a raw stream (see ``raw_format``)."""
    return [*(["-f", fmt] if fmt else []), "-i", str(path)]


def raw_format(codec: str) -> str:
    """ffmpeg's demuxer for a raw stream of ``codec`` (ffprobe cannot always guess it from the bytes)."""
    return {"h264": "h264", "hevc": "hevc"}[codec]


def ffprobe(path: Path, fmt: str | None = None) -> dict:
    """ffprobe's streams of ``path`` (frames counted by decoding) and its packets' times and key flags
    (``video_stream``, ``key_times``)."""
    result = subprocess.run([require_binary("ffprobe"), "-v", "error", "-count_frames", "-show_streams",
                             "-show_entries", "packet=pts_time,flags,stream_index", "-of", "json", *_input(path, fmt)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def video_stream(info: dict) -> dict:
    """The one video stream of ``ffprobe``'s ``info``: codec_name, profile, level, width, height, pix_fmt,
    nb_read_frames (frames decoded) ..."""
    [stream] = [s for s in info["streams"] if s["codec_type"] == "video"]
    return stream


def key_times(info: dict) -> list[float]:
    """The presentation times of the video stream's keyframes."""
    index = video_stream(info)["index"]
    return sorted(float(p["pts_time"]) for p in info["packets"] if p["stream_index"] == index and "K" in p["flags"])


def framemd5(path: Path, fmt: str | None = None) -> list[str]:
    """ffmpeg's MD5 of every decoded picture of the first video stream, in display order: equal lists prove the
    pictures are the source's."""
    result = subprocess.run([require_binary("ffmpeg"), "-nostdin", "-v", "error", *_input(path, fmt),
                             "-map", "0:v:0", "-f", "framemd5", "-"], capture_output=True, text=True, check=True)
    return [line.rsplit(",", 1)[1].strip() for line in result.stdout.splitlines() if line and not line.startswith("#")]


def ffmpeg_first_frame(path: Path, height: int, width: int) -> np.ndarray:
    """The first frame as ffmpeg shows it (turned upright as its display matrix says), RGB, ``height`` x ``width``."""
    raw = subprocess.run([require_binary("ffmpeg"), "-nostdin", "-v", "error", "-i", str(path), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def stall_encoder(monkeypatch, seconds: float = 1.0) -> None:
    """Every ``kiosk.video.recorder.Recorder``'s encoder busy for ``seconds`` at its first frame, with the
    fewest frames queued, as on a loaded machine: frames that arrive meanwhile are left out."""
    import kiosk.video.recorder as recorder

    monkeypatch.setattr(recorder, "QUEUE_BYTES", 0)  # QUEUE_FRAMES, whatever the picture's size
    write = recorder.Recorder._write
    stalled: set[int] = set()

    def stalling(self, item) -> None:
        if id(self) not in stalled:
            stalled.add(id(self))
            time.sleep(seconds)
        write(self, item)

    monkeypatch.setattr(recorder.Recorder, "_write", stalling)
