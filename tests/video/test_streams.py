"""kiosk.video.streams against ffmpeg's own view: frames decoded, transcoded files as ffprobe sees them,
trims that keep the source's frames exactly (framemd5), and clear errors for files that cannot be used."""

from __future__ import annotations

import subprocess
import threading

import numpy as np
import pytest

from kiosk import transfer_syntaxes as tsx
from kiosk.capture import SourceKind
from kiosk.config import VideoConfig
from kiosk.video.facts import VideoError
from kiosk.video.probe import probe, syntax_for
from kiosk.video.streams import (clip_capture, conforming_file, decode_frames, first_frame, keyframe_times,
                                 playback_changes, transcode, trim)
from tests.support.peers import require_binary
from tests.support.video import (faststart, ffmpeg_first_frame, ffprobe, framemd5, key_times, make_audio_only,
                                 make_video, truncated, turned, video_stream)

VIDEO = VideoConfig(reserve_mb=0, preset="ultrafast")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    made = {kind: make_video(folder, kind)
            for kind in ("h264-bframes", "h264-444", "h264-10bit", "hevc-hvc1", "vp9", "h264-mov", "mpeg4")}
    made["h264_3s"] = make_video(folder, "h264-bframes", seconds=3, name="h264-3s.mp4")
    made["nob_3s"] = make_video(folder, "h264-no-bframes", seconds=3)
    made["audio"] = make_audio_only(folder / "audio.m4a")
    made["cut"] = truncated(made["h264-bframes"], folder / "cut.mp4")  # the index (moov) is at the end: lost
    made["cut_fast"] = truncated(faststart(made["h264-bframes"], folder / "fast.mp4"), folder / "cut-fast.mp4", 0.6)
    made["cut_webm"] = truncated(made["vp9"], folder / "cut.webm", 0.6)
    (folder / "notes.mp4").write_text("not a video")
    made["text"] = folder / "notes.mp4"
    return made


def test_probe_tells_progressive_from_interlaced_and_hevc_main_from_main_10(tmp_path):
    progressive = probe(make_video(tmp_path, "h264-bframes"))
    interlaced = probe(make_video(tmp_path, "h264-interlaced"))
    assert not progressive.interlaced and interlaced.interlaced
    assert syntax_for(probe(make_video(tmp_path, "hevc10-hvc1"))) is tsx.HEVC_MAIN10


# -- decoding ----------------------------------------------------------------------------------------
def test_decode_frames_all_in_order_as_rgb(files):
    frames = list(decode_frames(files["h264-bframes"]))
    assert len(frames) == 50
    times = [t for t, _ in frames]
    assert times == sorted(times) and times[0] == 0.0 and times[-1] == pytest.approx(49 / 25)
    assert all(p.shape == (240, 320, 3) and p.dtype == np.uint8 for _, p in frames[:3])


def test_decode_frames_from_a_time(files):
    frames = [(t, p) for t, p in decode_frames(files["h264_3s"], start=1.4)]
    assert frames[0][0] == pytest.approx(1.4) and len(frames) == 75 - 35
    whole = dict(decode_frames(files["h264_3s"]))
    assert np.array_equal(frames[0][1], whole[frames[0][0]])  # the same picture as decoding from the start


def test_first_frame_is_ffmpegs(files):
    theirs = ffmpeg_first_frame(files["vp9"], 240, 320)
    ours = first_frame(files["vp9"])
    assert np.abs(ours.astype(int) - theirs).mean() < 1.0  # both from swscale; rounding may differ a little


def test_clip_capture(files):
    capture = clip_capture(files["h264-mov"], SourceKind.FILE_IMPORT, source="camera roll",
                           metadata={"lossy_history": [[None, "ISO_10918_1"]]})
    assert capture.is_clip and capture.kind is SourceKind.FILE_IMPORT
    assert capture.encoded_path == files["h264-mov"] and capture.source == "camera roll"
    assert capture.video.frames == 50 and capture.video.codec == "h264" and capture.frame_rate == 25
    assert capture.pixels.shape == (240, 320, 3) and np.array_equal(capture.pixels, first_frame(files["h264-mov"]))
    assert capture.metadata == {"lossy_history": [[None, "ISO_10918_1"]]}


def test_a_portrait_phone_video_is_shown_and_transcoded_upright(files, tmp_path):
    """Stored 320x240 with a display matrix turning it 90 degrees: decoded as ffmpeg shows it (240 wide,
    320 high), and not passed through (DICOM has no such matrix) but transcoded upright."""
    source = turned(files["h264-bframes"], tmp_path / "portrait.mp4")
    assert playback_changes(source) == "shown turned by 90 degrees (DICOM video has no display rotation)"
    assert playback_changes(files["h264-bframes"]) == ""
    assert np.array_equal(first_frame(source), ffmpeg_first_frame(source, 320, 240))
    (tmp_path / "work").mkdir()
    made = conforming_file(source, tmp_path / "work", VIDEO)
    assert made.parent == tmp_path / "work"
    stream = video_stream(ffprobe(made))
    assert (stream["width"], stream["height"], int(stream["nb_read_frames"])) == (240, 320, 50)
    assert playback_changes(made) == ""
    upright = first_frame(made).astype(int)
    assert np.abs(upright - first_frame(source)).mean() < 3  # the same picture, through one encode


def test_frames_an_edit_list_hides_are_not_passed_through(files, tmp_path):
    """A copy cut at 1.5 s without re-encoding starts at the keyframe at 1.0 s, its edit list hiding the
    13 frames before 1.5 s: the transcoded clip holds the frames players show (DICOM has no edit lists)."""
    ffmpeg = require_binary("ffmpeg")
    cut = tmp_path / "cut.mp4"
    subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-ss", "1.5", "-i", str(files["h264_3s"]), "-c", "copy",
                    "-t", "1", str(cut)], check=True)
    shown = framemd5(cut)
    assert playback_changes(cut).startswith("its first 13 frame(s) are hidden by an edit list")
    assert len(list(decode_frames(cut))) == len(shown)
    (tmp_path / "work").mkdir()
    made = conforming_file(cut, tmp_path / "work", VIDEO)
    assert made != cut and int(video_stream(ffprobe(made))["nb_read_frames"]) == len(shown)


# -- transcoding -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["h264-444", "h264-10bit", "vp9", "mpeg4", "h264-bframes"])
def test_transcode_to_h264_high(files, tmp_path, kind):
    progress: list[float] = []
    facts = transcode(files[kind], tmp_path / "out.mp4", VIDEO, progress=progress.append)
    info = ffprobe(tmp_path / "out.mp4")
    stream = video_stream(info)
    assert (stream["codec_name"], stream["profile"], stream["level"]) == ("h264", "High", 41)
    assert stream["pix_fmt"] == "yuv420p"
    assert (stream["width"], stream["height"]) == (320, 240)
    assert int(stream["nb_read_frames"]) == len(framemd5(files[kind])) == 50  # every frame, none added
    assert [s["codec_type"] for s in info["streams"]] == ["video"]  # the source's audio is dropped
    assert key_times(info) == [0.0, 1.0]  # a keyframe every second
    assert syntax_for(facts) is tsx.H264_HIGH_41 and facts.frames == 50
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) > 2
    assert (tmp_path / "out.mp4").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no part file left


def test_transcode_to_hevc_main(files, tmp_path):
    facts = transcode(files["vp9"], tmp_path / "out.mp4", VideoConfig(reserve_mb=0, codec="hevc", preset="ultrafast"))
    stream = video_stream(ffprobe(tmp_path / "out.mp4"))
    assert (stream["codec_name"], stream["profile"], stream["pix_fmt"]) == ("hevc", "Main", "yuv420p")
    assert int(stream["nb_read_frames"]) == 50
    assert syntax_for(facts) is tsx.HEVC_MAIN


def test_transcode_fits_larger_and_faster_video_into_level_42(tmp_path):
    """2400x400 at 120 fps: scaled to 1920x320 (the aspect kept), every other frame kept (60 fps), Level 4.2."""
    source = make_video(tmp_path, "h264-no-bframes", seconds=0.5, size="2400x400", rate=120, name="wide.mp4")
    facts = transcode(source, tmp_path / "out.mp4", VIDEO)
    stream = video_stream(ffprobe(tmp_path / "out.mp4"))
    assert (stream["width"], stream["height"], stream["level"], stream["r_frame_rate"]) == (1920, 320, 42, "60/1")
    assert int(stream["nb_read_frames"]) == 30
    assert syntax_for(facts) is tsx.H264_HIGH_42


def test_transcode_cancelled_leaves_nothing(files, tmp_path):
    cancel = threading.Event()
    with pytest.raises(VideoError, match="vp9.webm: transcoding was cancelled"):
        transcode(files["vp9"], tmp_path / "out.mp4", VIDEO, progress=lambda f: f > 0.3 and cancel.set(), cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_transcode_refused_below_the_reserve(files, tmp_path):
    with pytest.raises(VideoError, match="not enough free disk space") as caught:
        transcode(files["vp9"], tmp_path / "out.mp4", VideoConfig(reserve_mb=10**9))
    assert "reserve_mb" in caught.value.hint and list(tmp_path.iterdir()) == []


def test_conforming_file_passes_conforming_streams_through(files, tmp_path):
    for kind in ("h264-bframes", "hevc-hvc1", "h264-mov"):
        assert conforming_file(files[kind], tmp_path, VIDEO) == files[kind]
    assert list(tmp_path.iterdir()) == []
    made = conforming_file(files["h264-10bit"], tmp_path, VIDEO)
    assert made.parent == tmp_path and made.name == "h264-10bit.mp4" and syntax_for(probe(made)) is tsx.H264_HIGH_41
    assert conforming_file(files["h264-10bit"], tmp_path, VIDEO).name == "h264-10bit~1.mp4"  # never replaces a file


# -- trimming ----------------------------------------------------------------------------------------
def test_trim_without_b_frames_keeps_exactly_the_frames_asked_for(files, tmp_path):
    source = framemd5(files["nob_3s"])
    facts = trim(files["nob_3s"], tmp_path / "cut.mp4", 1.3, 2.5)
    # From the keyframe at 1.0 s (frame 25) to the last frame before 2.5 s (frame 62 at 2.48 s).
    assert framemd5(tmp_path / "cut.mp4") == source[25:63]
    assert facts.frames == 38 and facts.keyframes == (0, 25) and syntax_for(facts) is not None


def test_trim_with_b_frames_keeps_the_sources_frames(files, tmp_path):
    source = framemd5(files["h264_3s"])
    facts = trim(files["h264_3s"], tmp_path / "cut.mp4", 2.0, 2.9)
    kept = framemd5(tmp_path / "cut.mp4")
    # From frame 50 (the keyframe at 2.0 s); the end is the last frame before 2.9 s that needs no later
    # frame: with three B-frames between references, at most 3 frames earlier than frame 72.
    assert kept == source[50:50 + len(kept)] and 70 <= 50 + len(kept) <= 73
    assert facts.frames == len(kept)
    assert [t for t, _ in decode_frames(tmp_path / "cut.mp4")][0] == 0.0
    ffprobe_stream = video_stream(ffprobe(tmp_path / "cut.mp4"))
    assert ffprobe_stream["profile"] == "High" and int(ffprobe_stream["nb_read_frames"]) == len(kept)
    assert [s["codec_type"] for s in ffprobe(tmp_path / "cut.mp4")["streams"]] == ["video"]


def test_trim_of_everything_is_the_whole_clip(files, tmp_path):
    trim(files["h264_3s"], tmp_path / "all.mp4", 0.0, 60.0)
    assert framemd5(tmp_path / "all.mp4") == framemd5(files["h264_3s"])


def test_trim_refuses_an_empty_range(files, tmp_path):
    with pytest.raises(VideoError, match="must come after its start"):
        trim(files["h264-bframes"], tmp_path / "x.mp4", 1.5, 1.0)
    with pytest.raises(VideoError, match="no frame lies between"):
        trim(files["h264-bframes"], tmp_path / "x.mp4", 5.0, 6.0)
    assert list(tmp_path.iterdir()) == []


def test_keyframe_times(files):
    assert keyframe_times(probe(files["h264_3s"])) == [0.0, 1.0, 2.0] == key_times(ffprobe(files["h264_3s"]))


# -- files that cannot be used -----------------------------------------------------------------------
@pytest.mark.parametrize("name, problem", [
    ("cut", "cut.mp4: not a video file FFmpeg can read"),
    ("cut_fast", "cut-fast.mp4: the video is (damaged or )?cut short"),
    ("cut_webm", r"cut.webm: the video is cut short \(\d.\d s of its 2.0 s are there\)"),
    ("audio", "audio.m4a: holds no video stream"),
    ("text", "notes.mp4: not a video file FFmpeg can read"),
])
def test_unusable_files_are_named(files, tmp_path, name, problem):
    for use in (lambda p: clip_capture(p, SourceKind.FILE_IMPORT), lambda p: transcode(p, tmp_path / "o.mp4", VIDEO),
                lambda p: conforming_file(p, tmp_path, VIDEO)):
        with pytest.raises(VideoError, match=problem) as caught:
            use(files[name])
        assert "Traceback" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_file(tmp_path):
    with pytest.raises(VideoError, match="gone.mp4: no such video file"):
        clip_capture(tmp_path / "gone.mp4", SourceKind.FILE_IMPORT)
