"""Recording clips to disk (kiosk.video.recorder) from live ffmpeg streams and the demo camera,
checked with ffprobe: codec, profile, level, frame count; the disk guard, the limit, a lost source,
cancel, a crash, an encoder falling behind (frames left out, and said), and H.264 sources remuxed
(framemd5: the decoded pictures are the source's)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("cv2", reason="OpenCV is not installed (pip install kiosk[video])")
pytest.importorskip("av", reason="PyAV is not installed (pip install kiosk[video])")

from drivers.device import Settings  # noqa: E402
from drivers.registry import open_device  # noqa: E402
from kiosk.config import VideoConfig  # noqa: E402
from kiosk.video.facts import VideoError  # noqa: E402
from kiosk.video.recorder import MB, Recorder, record_clip  # noqa: E402
from tests.support.paths import ROOT  # noqa: E402
from tests.support.peers import free_port  # noqa: E402
from tests.support.sources import Stream  # noqa: E402
from tests.support.video import ffprobe, framemd5, make_video, stall_encoder, video_stream  # noqa: E402

VIDEO = VideoConfig(reserve_mb=0, preset="ultrafast")


@pytest.fixture(scope="module")
def small_clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    return {size: make_video(folder, "mjpeg", 3.0, size, rate=30, name=f"testsrc2-{size}.mkv")
            for size in ("320x240", "640x480")}


@pytest.fixture(scope="module")
def h264_clips(tmp_path_factory):
    """4 s of H.264 High at 320x240: without B-frames (remuxable) and with (reordered: encoded)."""
    folder = tmp_path_factory.mktemp("h264")
    return {0: make_video(folder, "h264-stream", 4, rate=30), 2: make_video(folder, "h264-stream-bframes", 4, rate=30)}


@pytest.fixture
def serve():
    """``serve(clip)``: a live paced stream of ``clip`` (looped) opened as a video device."""
    started = []

    def factory(clip: Path):
        stream = Stream(free_port(), clip).start()
        device = open_device(f"video:{stream.url}")
        started.append((stream, device))
        return stream, device

    yield factory
    for stream, device in started:
        if stream.proc is not None and stream.proc.poll() is None:
            stream.resume()
        stream.kill()
        device.close()


@pytest.mark.parametrize("size", ["320x240", "640x480"])
def test_an_mjpeg_stream_is_recorded_as_h264_high_41(serve, small_clips, tmp_path, size):
    _stream, device = serve(small_clips[size])
    started = time.monotonic()
    clip = record_clip(device, 2.0, tmp_path, VIDEO)
    assert time.monotonic() - started < 5.0
    width, height = map(int, size.split("x"))
    assert clip.is_clip and clip.encoded_path.parent == tmp_path and clip.encoded_path.suffix == ".mp4"
    probed = video_stream(ffprobe(clip.encoded_path))
    assert (probed["codec_name"], probed["profile"], probed["level"]) == ("h264", "High", 41)
    assert (probed["width"], probed["height"], probed["pix_fmt"]) == (width, height, "yuv420p")
    # 60 at full pace; on a loaded machine ffmpeg may deliver a few less, never more.
    assert 45 <= int(probed["nb_read_frames"]) <= 61
    assert clip.video.frames == int(probed["nb_read_frames"]) and clip.frame_rate == 30
    assert clip.video.keyframes[0] == 0 and all(b - a <= 30 for a, b in zip(clip.video.keyframes,
                                                                          clip.video.keyframes[1:]))
    assert clip.pixels.shape == (height, width, 3) and clip.source == device.info.uri
    assert clip.metadata["lossy_history"][0][1] == "ISO_10918_1"  # the card's JPEG came first


def test_the_recorder_reports_while_running_and_stops_at_its_limit(serve, small_clips, tmp_path):
    _stream, device = serve(small_clips["320x240"])
    recorder = Recorder(device, tmp_path, VIDEO, max_seconds=1.0)
    recorder.start()
    assert recorder.limit == 1.0 and recorder.reason == "" and recorder.free_bytes > 0
    time.sleep(0.5)
    assert 0.2 <= recorder.elapsed <= 1.0 and recorder.frames > 3
    assert recorder.stopped.wait(3.0)
    assert recorder.reason == "limit" and "limit" in recorder.message and recorder.elapsed == pytest.approx(1, abs=0.1)
    clip = recorder.stop()
    assert 25 <= clip.video.frames <= 31 and recorder.dropped == 0 and recorder.dropped_note == ""
    assert recorder.stop() is clip  # asking again gives the same clip


@pytest.mark.parametrize("preset", ["ultrafast", "superfast"])
def test_an_encoder_falling_behind_leaves_frames_out_and_says_so(serve, small_clips, tmp_path, monkeypatch, preset):
    _stream, device = serve(small_clips["320x240"])
    stall_encoder(monkeypatch, 1.0)
    steps = []
    clip = record_clip(device, 3.0, tmp_path, VideoConfig(reserve_mb=0, preset=preset), steps.append)
    [note] = [step.message for step in steps if step.fraction >= 1.0]
    said = re.fullmatch(r"(\d+) of (\d+) frame\(s\) were left out of the clip: the kiosk could not keep up with "
                        r"the source, so the clip jumps there \((.*)\)", note)
    assert said, note
    dropped, total = int(said[1]), int(said[2])
    assert dropped >= 10 and total - dropped == clip.video.frames  # 30 fps against a queue of 6 for 1 s
    assert int(video_stream(ffprobe(clip.encoded_path))["nb_read_frames"]) == clip.video.frames
    assert ("ultrafast" in said[3]) == (preset != "ultrafast")  # a faster preset is advised only where there is one


def test_too_little_free_disk_refuses_to_start(serve, small_clips, tmp_path):
    _stream, device = serve(small_clips["320x240"])
    with pytest.raises(VideoError, match="refused.*MB free"):
        Recorder(device, tmp_path, VideoConfig(reserve_mb=10**9), 5.0).start()
    assert list(tmp_path.iterdir()) == []


def test_the_disk_filling_stops_the_recording_and_keeps_the_file(serve, small_clips, tmp_path):
    _stream, device = serve(small_clips["320x240"])
    recorder = Recorder(device, tmp_path, VideoConfig(reserve_mb=100), 30.0)
    filled = threading.Event()
    recorder.free_space = lambda folder: 50 * MB if filled.is_set() else 10_000 * MB
    recorder.start()
    time.sleep(1.0)
    filled.set()
    assert recorder.stopped.wait(3.0)
    assert recorder.reason == "disk" and "nearly full (50 MB free" in recorder.message
    assert recorder.free_bytes == 50 * MB
    clip = recorder.stop()
    assert 20 <= clip.video.frames <= 75
    assert int(video_stream(ffprobe(clip.encoded_path))["nb_read_frames"]) == clip.video.frames


@pytest.mark.parametrize("how", ["kill", "pause"])
def test_a_lost_or_stalled_source_stops_the_recording_and_keeps_a_playable_file(serve, small_clips, tmp_path, how):
    stream, device = serve(small_clips["320x240"])
    recorder = Recorder(device, tmp_path, VIDEO, 30.0)
    recorder.start()
    time.sleep(1.2)
    stream.kill() if how == "kill" else stream.pause()
    went = time.monotonic()
    assert recorder.stopped.wait(5.0)
    assert time.monotonic() - went < 3.0
    assert recorder.reason == "source" and "kept" in recorder.message
    clip = recorder.stop()
    assert 20 <= clip.video.frames <= 45
    assert len(framemd5(clip.encoded_path)) == clip.video.frames  # every frame decodes


def test_cancel_deletes_the_file(tmp_path):
    with open_device("demo:camera") as camera:
        camera.configure(Settings(width=320, height=240))
        recorder = Recorder(camera, tmp_path, VIDEO, 10.0)
        recorder.start()
        time.sleep(0.4)
        assert recorder.path.exists()
        recorder.cancel()
    assert list(tmp_path.iterdir()) == [] and recorder.reason == ""
    with pytest.raises(VideoError, match="not running"):
        recorder.stop()


def test_odd_sizes_lose_their_last_row_and_column_and_hevc_is_main(tmp_path):
    with open_device("demo:camera") as camera:
        camera.configure(Settings(width=321, height=241))
        clip = record_clip(camera, 0.5, tmp_path, VideoConfig(reserve_mb=0, codec="hevc", preset="ultrafast"))
    probed = video_stream(ffprobe(clip.encoded_path))
    assert (probed["codec_name"], probed["profile"], probed["width"], probed["height"]) == ("hevc", "Main", 320, 240)
    assert clip.pixels.shape == (240, 320, 3) and clip.video.codec == "hevc"


def test_a_crash_keeps_what_was_encoded(tmp_path):
    """The fragmented MP4 is readable up to the last complete fragment when the process dies."""
    script = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from drivers.device import Settings
        from drivers.registry import open_device
        from kiosk.config import VideoConfig
        from kiosk.video.recorder import Recorder
        camera = open_device("demo:camera")
        camera.configure(Settings(width=320, height=240))
        recorder = Recorder(camera, Path({str(tmp_path)!r}), VideoConfig(reserve_mb=0, preset="ultrafast"), 60)
        recorder.start()
        time.sleep(2.6)
        os._exit(9)
    """)
    subprocess.run([sys.executable, "-c", script], timeout=60)
    [path] = tmp_path.glob("clip-*.mp4")
    from kiosk.video.probe import probe

    facts = probe(path)
    assert 25 <= facts.frames <= 80 and facts.codec == "h264"
    assert len(framemd5(path)) == facts.frames


def test_a_conforming_h264_stream_is_remuxed_not_reencoded(serve, h264_clips, tmp_path):
    _stream, device = serve(h264_clips[0])
    device.acquire()  # the stream's facts come from its first decoded picture
    assert device.encoded_codec == "h264" and device.stream_facts.profile == "High"
    clip = record_clip(device, 2.0, tmp_path, VIDEO)
    # The stream's own coding: its level (1.3 for 320x240, not the 4.1 the encoder writes) and pictures.
    assert clip.video.level == 13 and 45 <= clip.video.frames <= 61
    assert "lossy_history" not in clip.metadata  # the stored stream is the only lossy step
    recorded, source = framemd5(clip.encoded_path), framemd5(h264_clips[0])
    looped = source + source
    assert any(looped[i:i + len(recorded)] == recorded for i in range(len(source))), \
        "the recorded pictures are not a run of the source's"
    assert source.index(recorded[0]) % 15 == 0  # it starts at one of the source's keyframes


def test_an_h264_stream_with_reordered_frames_is_encoded(serve, h264_clips, tmp_path):
    _stream, device = serve(h264_clips[2])
    clip = record_clip(device, 1.0, tmp_path, VIDEO)
    assert clip.video.level == 41 and 25 <= clip.video.frames <= 31
    assert clip.metadata["lossy_history"][0][1] == "ISO_14496_10"
