"""Video files worked on with PyAV: frames decoded, a file made a clip capture, transcoded to a DICOM video
syntax, or trimmed at keyframes without re-encoding.

Nothing here holds more than a frame, or one small record per packet, at a time: a clip of half an hour
costs the same memory as one of a second. Files are written under a hidden name beside their destination
and renamed when complete, so a half-written video never appears under its final name.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from kiosk.capture import Capture, EncodedFormat, SourceKind
from kiosk.private import FILE_MODE, unused_name
from kiosk.video.facts import VideoError, VideoFacts
from kiosk.video.probe import load_av, open_container, probe, syntax_for, why_not

if TYPE_CHECKING:
    from kiosk.config import VideoConfig

MB = 1 << 20
MAX_RATE = 60  # DICOM's H.264 and HEVC syntaxes stop at 60 fps (PS3.5 8.2.8, 8.2.9)
# The largest picture each output codec gets: H.264 High 4.2 and HEVC Main 5.1 in PS3.5.
MAX_SIZE = {"h264": (1920, 1080), "hevc": (4096, 2176)}
# H.264 High Profile's largest bit rate and coded picture buffer at Levels 4.1 and 4.2 (ITU-T H.264 A.3.1,
# Table A-1, x 1.25 for High): capped so that the level the stream names is true of it.
H264_VBV = "vbv-maxrate=62500:vbv-bufsize=78125"


def decode_frames(path: str | os.PathLike[str], start: float = 0.0) -> Iterator[tuple[float, np.ndarray]]:
    """The frames of the first video stream from ``start`` (seconds from the clip's first frame) on, in
    display order, as (time in seconds from the first frame, RGB uint8 array), as a player shows them
    (upright, without frames an edit list hides: ``playback_changes``)."""
    av = load_av()
    path = Path(path)
    with open_container(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        base, rate = _start_pts(stream), float(_fraction(stream))
        tolerance = 0.25 / rate
        count = 0
        try:
            if start > 0 and stream.time_base:
                # To the keyframe before ``start``: frames are decoded from there and skipped up to ``start``.
                container.seek(base + int(start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                time = count / rate if frame.pts is None else float((frame.pts - base) * stream.time_base)
                count += 1
                if time + tolerance < start:
                    continue
                pixels = frame.to_ndarray(format="rgb24")
                turns = _turns(frame)
                yield round(time, 6), np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels
        except av.FFmpegError as exc:
            raise VideoError(f"{path.name}: the video is damaged after {count} frame(s) ({exc})",
                             "use a complete copy of the file") from None


def first_frame(path: str | os.PathLike[str]) -> np.ndarray:
    """The clip's first frame (RGB uint8), e.g. for its thumbnail."""
    frames = decode_frames(path)
    try:
        return next(frames)[1]
    except StopIteration:
        raise VideoError(f"{Path(path).name}: no frame of the video can be decoded",
                         "check that the file is a whole video, not cut short") from None
    finally:
        frames.close()


def playback_changes(path: str | os.PathLike[str]) -> str:
    """What a player does to the coded frames that DICOM video, with neither display matrices nor edit
    lists, would not: "" when it shows them as they are coded; else why, e.g. "shown turned by 90 degrees"
    (a phone's portrait video, stored lying on its side) or "its first 13 frames are hidden by an edit
    list" (a file cut without re-encoding). Such a stream is transcoded as shown, not passed through.
    Only the start of the file is read."""
    av = load_av()
    path = Path(path)
    hidden, turns = 0, None
    with open_container(path) as container:
        stream = _video_stream(container, path)
        try:
            for packet in container.demux(stream):
                hidden += bool(packet.size and packet.is_discard)
                if turns is None:
                    turns = next((_turns(frame) for frame in packet.decode()), None)
                if turns is not None and packet.size and not packet.is_discard:
                    break
        except av.FFmpegError as exc:
            raise VideoError(f"{path.name}: the video is damaged at its start ({exc})",
                             "use a complete copy of the file") from None
    if turns is None:
        raise VideoError(f"{path.name}: no frame of the video can be decoded",
                         "check that the file is a whole video, not cut short")
    if turns:
        return f"shown turned by {90 * turns} degrees (DICOM video has no display rotation)"
    if hidden:
        return f"its first {hidden} frame(s) are hidden by an edit list (DICOM video has none)"
    return ""


def clip_capture(path: str | os.PathLike[str], kind: SourceKind, source: str = "",
                 metadata: dict[str, Any] | None = None, *, facts: VideoFacts | None = None) -> Capture:
    """The clip capture of a video file: the file itself, its facts, and its first frame as the thumbnail.
    ``facts``: the file's, when the caller has probed it already (probing reads every packet)."""
    path = Path(path)
    facts = facts or probe(path)
    return Capture(kind=kind, pixels=first_frame(path), encoded_format=EncodedFormat.VIDEO, encoded_path=path,
                   video=facts, frame_rate=facts.frame_rate, source=source, metadata=dict(metadata or {}))


def conforming_file(src: str | os.PathLike[str], work_dir: str | os.PathLike[str], video: "VideoConfig") -> Path:
    """``src`` itself when its stream can be stored as it is (``syntax_for``, and shown as it is coded:
    ``playback_changes``), else a conforming copy transcoded into ``work_dir`` (named after ``src``, never
    replacing a file there)."""
    src = Path(src)
    if syntax_for(probe(src)) is not None and not playback_changes(src):
        return src
    dst = unused_name(Path(work_dir) / f"{src.stem}.mp4")
    transcode(src, dst, video)
    return dst


@dataclass(frozen=True)
class _Plan:
    """What the transcoded stream will be: its codec, size, rate and the encoder's options."""

    codec: str
    width: int
    height: int
    rate: Fraction
    options: dict[str, str]


def _plan(facts: VideoFacts, rate: Fraction, video: "VideoConfig", turns: int) -> _Plan:
    codec = "hevc" if video.codec == "hevc" else "h264"
    width, height = (facts.height, facts.width) if turns % 2 else (facts.width, facts.height)
    max_w, max_h = MAX_SIZE[codec]
    scale = min(1.0, max_w / width, max_h / height)
    # 4:2:0 needs even sides; scaled pictures keep the source's aspect.
    width, height = max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
    rate = min(rate, Fraction(MAX_RATE))
    keyint = max(1, round(rate))  # a keyframe every second: trims and seeks land within one second
    gop = f"keyint={keyint}:min-keyint={keyint}:scenecut=0"
    if codec == "hevc":
        options = {"preset": video.preset, "crf": str(video.crf), "profile": "main",
                   "x265-params": f"{gop}:log-level=error"}
    else:
        level = "4.1" if (width <= 1920 and height <= 1080 and rate <= 30) or \
            (width <= 1280 and height <= 720 and rate <= 60) else "4.2"
        # The 8x8 transform is what makes x264 signal High: the fastest presets leave it off and would
        # write a (Constrained) Baseline stream.
        options = {"preset": video.preset, "crf": str(video.crf), "profile": "high", "level": level,
                   "x264-params": f"{gop}:{H264_VBV}:8x8dct=1"}
    return _Plan(codec, width, height, rate, options)


def transcode(src: str | os.PathLike[str], dst: str | os.PathLike[str], video: "VideoConfig",
              progress: Callable[[float], None] | None = None,
              cancel: threading.Event | None = None) -> VideoFacts:
    """Encode the first video stream of ``src`` into an MP4 at ``dst`` that a DICOM video syntax takes as it is:
    H.264 High (Level 4.1 up to 1080p30 and 720p60, else 4.2) or, with ``video.codec == "hevc"``, HEVC Main;
    8-bit 4:2:0, a keyframe every second, ``video.preset`` and ``video.crf``, no audio. Larger pictures are
    scaled down to fit (keeping the aspect), faster ones reduced to 60 fps; the frames are those a player
    shows (``playback_changes``: turned upright, none an edit list hides). ``progress(fraction)`` is called as frames are done; setting
    ``cancel`` stops it (``VideoError``, nothing left at ``dst``). Returns the facts of the new file."""
    av = load_av()
    src, dst = Path(src), Path(dst)
    facts = probe(src)
    _check_space(src, dst, video)
    part = dst.with_name(f".{dst.stem}.part{dst.suffix or '.mp4'}")
    try:
        with open_container(src) as inp, av.open(str(part), "w", format="mp4") as out:
            done = _encode(src, inp, out, facts, video, progress, cancel)
        if done == 0:
            raise VideoError(f"{src.name}: no frame of the video can be decoded", "use a complete copy of the file")
        os.chmod(part, FILE_MODE)  # patient data, whatever the umask
        os.replace(part, dst)
    except OSError as exc:
        raise VideoError(f"{dst}: cannot write the video ({exc.strerror or exc})",
                         "check free space and permissions") from None
    finally:
        part.unlink(missing_ok=True)
    result = probe(dst)
    if syntax_for(result) is None:  # the encoder's own output: a bug here, not the user's file
        dst.unlink(missing_ok=True)
        raise VideoError(f"{src.name}: the transcoded video does not conform ({why_not(result)})")
    if progress is not None:
        progress(1.0)
    return result


def _encode(src: Path, inp: Any, out: Any, facts: VideoFacts, video: "VideoConfig",
            progress: Callable[[float], None] | None, cancel: threading.Event | None) -> int:
    """Decode ``inp``'s video frame by frame into a new stream of ``out``; returns the frames encoded.
    The encoder is made at the first frame, which says whether the picture is to be turned."""
    av = load_av()
    stream = _video_stream(inp, src)
    stream.thread_type = "AUTO"
    rate = _fraction(stream, facts.frame_rate)
    base, src_rate = _start_pts(stream), float(rate)
    encoder = plan = None
    turns = reported = -1
    decoded = done = next_tick = 0
    try:
        for frame in inp.decode(stream):
            if cancel is not None and cancel.is_set():
                raise VideoError(f"{src.name}: transcoding was cancelled")
            if encoder is None:
                turns = _turns(frame)
                plan = _plan(facts, rate, video, turns)
                encoder = out.add_stream("libx265" if plan.codec == "hevc" else "libx264", rate=plan.rate,
                                         options=plan.options)
                encoder.width, encoder.height, encoder.pix_fmt = plan.width, plan.height, "yuv420p"
                encoder.codec_context.time_base = 1 / plan.rate
            time = decoded / src_rate if frame.pts is None else float((frame.pts - base) * stream.time_base)
            decoded += 1
            if plan.rate < rate:  # fewer frames per second: the first frame of each tick
                tick = math.floor(time * plan.rate + 1e-6)
                if tick < next_tick:
                    continue
                next_tick = tick + 1
            if turns:
                upright = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), turns))
                frame = av.VideoFrame.from_ndarray(upright, format="rgb24")
            picture = frame.reformat(plan.width, plan.height, format="yuv420p")
            picture.pts, picture.time_base = done, encoder.codec_context.time_base
            picture.pict_type = av.video.frame.PictureType.NONE  # else the source's keyframes are forced on the encoder
            done += 1
            out.mux(encoder.encode(picture))
            if progress is not None and int(100 * decoded / facts.frames) != reported:
                reported = int(100 * decoded / facts.frames)
                progress(min(1.0, decoded / facts.frames))
        if encoder is not None:
            out.mux(encoder.encode(None))
    except av.FFmpegError as exc:
        raise VideoError(f"{src.name}: the video is damaged after {decoded} frame(s) ({exc})",
                         "use a complete copy of the file") from None
    return done


def _check_space(src: Path, dst: Path, video: "VideoConfig") -> None:
    """Refuse to start when the copy (about the source's size) would leave less than ``reserve_mb`` free."""
    try:
        free = shutil.disk_usage(dst.parent).free
    except OSError as exc:
        raise VideoError(f"{dst.parent}: cannot write the transcoded video there ({exc.strerror})",
                         "check that the folder exists") from None
    need = src.stat().st_size + video.reserve_mb * MB
    if free < need:
        raise VideoError(f"{src.name}: not enough free disk space to transcode it ({free / MB:,.0f} MB free, "
                         f"{need / MB:,.0f} MB needed with the reserve)",
                         "free disk space, or lower [video] reserve_mb")


@dataclass(frozen=True)
class _Packet:
    pts: int
    dts: int
    keyframe: bool


def trim(src: str | os.PathLike[str], dst: str | os.PathLike[str], start: float, end: float) -> VideoFacts:
    """Copy the frames from ``start`` to ``end`` (seconds from the clip's first frame) of ``src`` into ``dst``
    without re-encoding them: the copy starts at the last keyframe at or before ``start`` and ends with
    the last frame before ``end`` that needs no later frame to decode (with B-frames that may be a few
    frames earlier). Audio is dropped. Returns the facts of the copy."""
    av = load_av()
    src, dst = Path(src), Path(dst)
    if not end > start:
        raise VideoError(f"{src.name}: the end of a trim ({end:g} s) must come after its start ({start:g} s)")
    packets, time_base, rate = _packets(src)
    first = min(p.pts for p in packets)
    tolerance = 0.25 / rate

    def seconds(pts: int) -> float:
        return float((pts - first) * time_base)

    if max(seconds(p.pts) for p in packets) + tolerance < start:
        raise VideoError(f"{src.name}: no frame lies between {start:g} s and {end:g} s")
    keys = [i for i, p in enumerate(packets) if p.keyframe and seconds(p.pts) <= start + tolerance]
    begin = max(keys, key=lambda i: packets[i].pts) if keys else next(i for i, p in enumerate(packets) if p.keyframe)
    kept = _kept(packets, begin, lambda pts: seconds(pts) + tolerance < end)
    if not kept:
        raise VideoError(f"{src.name}: no frame lies between {start:g} s and {end:g} s")
    wanted = set(kept)
    shift = min(packets[i].dts for i in kept)  # the copy's first packet is decoded at time 0
    part = dst.with_name(f".{dst.stem}.part{dst.suffix or '.mp4'}")
    try:
        with open_container(src) as inp, av.open(str(part), "w", format=_format_of(dst)) as out:
            stream = _video_stream(inp, src)
            copy = out.add_stream_from_template(stream)
            index = 0
            for packet in inp.demux(stream):
                if packet.size == 0:
                    continue
                if index in wanted:
                    packet.pts -= shift
                    packet.dts = (packet.dts if packet.dts is not None else packets[index].dts) - shift
                    packet.stream = copy
                    out.mux(packet)
                index += 1
                if index > kept[-1]:
                    break
        os.chmod(part, FILE_MODE)  # patient data, whatever the umask
        os.replace(part, dst)
    except av.FFmpegError as exc:
        raise VideoError(f"{src.name}: cannot copy the video ({exc})", "use a complete copy of the file") from None
    except OSError as exc:
        raise VideoError(f"{dst}: cannot write the video ({exc.strerror or exc})",
                         "check free space and permissions") from None
    finally:
        part.unlink(missing_ok=True)
    return probe(dst)


def _packets(path: Path) -> tuple[list[_Packet], Fraction, float]:
    """Every video packet's timestamps in decode order, the stream's time base and frame rate."""
    av = load_av()
    with open_container(path) as container:
        stream = _video_stream(container, path)
        packets = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if packet.pts is None:
                    raise VideoError(f"{path.name}: the video has no timestamps, so it cannot be cut",
                                     "put it in an MP4 or MKV file first")
                packets.append(_Packet(packet.pts, packet.pts if packet.dts is None else packet.dts,
                                       bool(packet.is_keyframe)))
        except av.FFmpegError as exc:
            raise VideoError(f"{path.name}: the video is damaged after frame {len(packets)} ({exc})",
                             "use a complete copy of the file") from None
        if not packets:
            raise VideoError(f"{path.name}: the video stream has no frames", "check that the file is not cut short")
        return packets, stream.time_base, float(_fraction(stream))


def _kept(packets: list[_Packet], begin: int, before_end: Callable[[int], bool]) -> list[int]:
    """The packets (decode-order indexes) of the longest cut from keyframe ``begin`` that decodes to an
    unbroken run of frames, all before the end.

    A run of packets in decode order always decodes (frames refer only to frames decoded before them);
    with B-frames it may lack a frame shown in the middle, whose packet comes later, so the cut is the
    longest such run whose frames are exactly the first ones shown from the keyframe on. Frames shown
    before the keyframe but decoded after it (an open GOP's leading frames) need earlier frames: left out.
    """
    start = packets[begin].pts
    shown = sorted(p.pts for p in packets[begin:] if p.pts >= start)
    rank = {pts: n for n, pts in enumerate(shown)}
    taken: list[int] = []
    best, highest = 0, -1
    for index in range(begin, len(packets)):
        pts = packets[index].pts
        if pts < start:
            continue
        if not before_end(pts):
            break  # frames after it in decode order may refer to it
        taken.append(index)
        highest = max(highest, rank[pts])
        if highest == len(taken) - 1:
            best = len(taken)
    return taken[:best]


def keyframe_times(facts: VideoFacts) -> list[float]:
    """The times (seconds from the first frame) that a trim can start at: the clip's keyframes."""
    rate = facts.frame_rate or 25.0
    return [round(frame / rate, 6) for frame in facts.keyframes]


# -- small helpers -------------------------------------------------------------------------------
def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        raise VideoError(f"{path.name}: holds no video stream", "choose a video file")
    return container.streams.video[0]


def _turns(frame: Any) -> int:
    """Quarter turns (counterclockwise) that show ``frame`` upright: its display matrix's rotation."""
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 4


def _start_pts(stream: Any) -> int:
    return stream.start_time if stream.start_time is not None else 0


def _fraction(stream: Any, fallback: float = 25.0) -> Fraction:
    """The stream's frame rate as a fraction (30000/1001 stays exact), from its header, else ``fallback``
    (e.g. the rate ``probe`` worked out from the timestamps)."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate and 0 < float(rate) <= 240:
            return Fraction(rate).limit_denominator(1001)
    return Fraction(fallback or 25.0).limit_denominator(1001)


def _format_of(path: Path) -> str:
    """The container a trimmed copy is written as, by its name (MP4 unless it says otherwise)."""
    return {".mov": "mov", ".mkv": "matroska"}.get(path.suffix.lower(), "mp4")
