"""Read a video file's facts (PyAV) and say under which DICOM transfer syntax it can be stored as it is.

``probe`` counts frames and finds the keyframes in an MP4/MOV file's sample table (``kiosk.video.mp4index``),
else by demuxing every packet (nothing is decoded);
``syntax_for`` applies PS3.5 8.2.8-8.2.9 (profile, level, size, rate, 4:2:0) and ``why_not`` says in
words why a stream does not qualify, so that it is transcoded instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from kiosk import transfer_syntaxes as tsx
from kiosk.video.facts import VideoError, VideoFacts

# 8-bit 4:2:0: what H.264 High and HEVC Main code (yuvj420p is the same with full-range levels).
PIX_8BIT_420 = ("yuv420p", "yuvj420p")
PIX_10BIT_420 = ("yuv420p10le", "yuv420p10be")
# Profiles whose streams a High Profile decoder decodes (H.264 A.2: they are subsets of High).
H264_PROFILES = ("High", "Main", "Constrained Baseline")


def load_av():
    """PyAV, with FFmpeg's own logging off; a ``VideoError`` saying how to install it when it is missing."""
    try:
        import av
    except ImportError:
        raise VideoError("video support is not installed", "pip install 'kiosk[video]' (it brings PyAV)") from None
    # FFmpeg's messages dropped in C. Any level routes errors to a Python callback that takes the GIL: a
    # decoder thread logging while the GIL holder frees that decoder (and waits for the thread) deadlocks.
    av.logging.set_level(None)
    return av


def open_container(path: str | os.PathLike[str]):
    """The file opened with PyAV, or a ``VideoError`` naming it when it is missing or unreadable."""
    av = load_av()
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file", "check the path")
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path.name}: not a video file FFmpeg can read ({getattr(exc, 'strerror', None) or exc})",
                         "check that the file is a whole video (MP4, MOV, MKV, WebM ...), not cut short") from None


def probe(path: str | os.PathLike[str]) -> VideoFacts:
    """The facts of the first video stream of ``path``; ``VideoError`` if it has none or is damaged."""
    av = load_av()
    path = Path(path)
    with open_container(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path.name}: holds no video stream", "choose a video file")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        index = _index(path, container, stream)
        if index is not None:
            frames, keyframes, last_time = index.frames, list(index.sync), index.end_time
        else:
            frames, keyframes, last_time = _demux(path, av, container, stream)
        if frames == 0:
            raise VideoError(f"{path.name}: the video stream has no frames", "check that the file is not cut short")
        _check_complete(path, container, stream, frames, last_time)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        frame_rate = float(rate) if rate else 0.0
        if not 0 < frame_rate <= 240:
            frame_rate = frames / last_time if last_time > 0 else 25.0
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
        duration = last_time - start if last_time > start else frames / frame_rate
        return VideoFacts(
            codec=ctx.name, width=ctx.width, height=ctx.height, frame_rate=round(frame_rate, 3), frames=frames,
            duration=round(duration, 3), profile=ctx.profile or "", level=max(0, getattr(ctx, "level", 0) or 0),
            pix_fmt=ctx.pix_fmt or "", bit_rate=int(ctx.bit_rate or container.bit_rate or 0),
            interlaced=_interlaced(stream), keyframes=tuple(keyframes) or (0,), container=container.format.name)


def _index(path: Path, container, stream):
    """The MP4/MOV sample table of ``stream`` (``kiosk.video.mp4index``), when the file has a plain one."""
    if "mp4" not in container.format.name.split(","):
        return None
    from kiosk.video.mp4index import read_index

    index = read_index(path)
    if index is None or index.track_id != stream.id or index.codec != stream.codec_context.name:
        return None
    return index


def _demux(path: Path, av, container, stream) -> tuple[int, list[int], float]:
    """Frames, keyframes and the end of the last frame shown (s), from every packet (none decoded)."""
    frames, keyframes, last_time = 0, [], 0.0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the flush packet at the end
                continue
            if packet.is_corrupt:  # e.g. its bytes end with the file
                raise VideoError(f"{path.name}: the video is damaged or cut short at frame {frames + 1}",
                                 "use a complete copy of the file")
            if packet.is_keyframe:
                keyframes.append(frames)
            if packet.pts is not None and packet.time_base is not None:
                last_time = max(last_time, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            frames += 1
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"{path.name}: the video is damaged after frame {frames} ({exc})",
                         "use a complete copy of the file") from None
    return frames, keyframes, last_time


def _check_complete(path: Path, container, stream, frames: int, last_time: float) -> None:
    """Refuse a file whose header announces more than it holds: a copy cut short (MP4s list their frames,
    a Matroska/WebM file with one stream gives its duration)."""
    if stream.frames and frames < stream.frames:
        raise VideoError(f"{path.name}: the video is cut short ({frames} of its {stream.frames} frames are there)",
                         "use a complete copy of the file")
    if len(container.streams) == 1 and container.duration and last_time < container.duration / 1e6 - 0.5:
        raise VideoError(f"{path.name}: the video is cut short ({last_time:.1f} s of its "
                         f"{container.duration / 1e6:.1f} s are there)", "use a complete copy of the file")


def _interlaced(stream) -> bool:
    # FFmpeg's AVFieldOrder: 0 unknown, 1 progressive, 2-5 the interlaced field orders (PyAV gives the int).
    order = getattr(stream.codec_context, "field_order", 0)
    return order not in (0, 1, None, "progressive", "unknown")


def syntax_for(facts: VideoFacts) -> tsx.TransferSyntax | None:
    """The DICOM transfer syntax the stream conforms to as it is (its bytes kept), or None."""
    return None if why_not(facts) else _syntax(facts)


def _syntax(facts: VideoFacts) -> tsx.TransferSyntax:
    if facts.codec == "hevc":
        return tsx.HEVC_MAIN10 if facts.pix_fmt in PIX_10BIT_420 else tsx.HEVC_MAIN
    fits_41 = (facts.width <= 1920 and facts.height <= 1080 and facts.frame_rate <= 30.01) or \
        (facts.width <= 1280 and facts.height <= 720 and facts.frame_rate <= 60.01)
    return tsx.H264_HIGH_41 if fits_41 and facts.level <= 41 else tsx.H264_HIGH_42


def why_not(facts: VideoFacts) -> str:
    """Why the stream cannot be stored as it is ("" when it can): the codec, profile, chroma, bit depth,
    level, size or rate that PS3.5 does not allow."""
    if facts.codec == "h264":
        if facts.profile not in H264_PROFILES:
            return f"H.264 {facts.profile or 'of an unknown profile'} (DICOM takes High Profile, 8-bit 4:2:0)"
        if facts.pix_fmt not in PIX_8BIT_420:
            return f"H.264 in {facts.pix_fmt} (DICOM takes 8-bit 4:2:0)"
        if facts.width > 1920 or facts.height > 1080:
            return f"H.264 at {facts.size} (DICOM's H.264 syntaxes stop at 1920x1080)"
        if facts.frame_rate > 60.01:
            return f"H.264 at {facts.frame_rate:g} fps (DICOM's H.264 syntaxes stop at 60 fps)"
        if facts.level > 42:
            return f"H.264 Level {facts.level / 10:g} (DICOM takes up to Level 4.2)"
        if facts.frame_rate > 30.01 and (facts.width > 1280 or facts.height > 720) and facts.interlaced:
            return "interlaced H.264 above 30 fps (Level 4.2 in DICOM is for progressive video)"
        return ""
    if facts.codec == "hevc":
        if facts.profile not in ("Main", "Main 10"):
            return f"HEVC {facts.profile or 'of an unknown profile'} (DICOM takes Main and Main 10, 4:2:0)"
        if facts.pix_fmt not in PIX_8BIT_420 + PIX_10BIT_420 or (facts.profile == "Main" and facts.pix_fmt not in PIX_8BIT_420):
            return f"HEVC in {facts.pix_fmt} (DICOM takes 4:2:0, 8 or 10 bits)"
        if facts.level > 153:
            return f"HEVC Level {facts.level / 30:g} (DICOM takes up to Level 5.1)"
        if facts.width > 4096 or facts.height > 2176:
            return f"HEVC at {facts.size} (DICOM's HEVC syntaxes stop at 4096x2176)"
        return ""
    return f"{facts.describe().split(',')[0]} (DICOM stores H.264 and HEVC video)"
