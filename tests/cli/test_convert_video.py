"""``kiosk convert`` of video files: each becomes one clip, passed through when DICOM takes its stream as it
is, else transcoded once beside the output; unusable files get one line each and the others go on.

Most tests stand in for ``Station.add_clip`` (``clips``) and check the clip capture it is handed, its
file as ffprobe and framemd5 see it while it exists. The tests marked ``needs_video_objects`` check
the DICOM objects themselves and run once the video IODs (``Batch.objects``) are built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.encaps import generate_fragments

from kiosk import transfer_syntaxes as tsx
from kiosk.capture import Capture, SourceKind
from kiosk.cli import main
from kiosk.dicomize import Batch
from kiosk.station import Station
from tests.support.dicomize_helpers import jpeg_bytes, pixels_of
from tests.support.video import (faststart, ffprobe, framemd5, make_audio_only, make_video, truncated, turned,
                                 video_stream)

PATIENT = ["--patient-name", "Doe^Jane", "--patient-id", "PID1"]
needs_video_objects = pytest.mark.skipif(
    not hasattr(Batch, "objects"), reason="the video objects (Batch.objects, kiosk/dicomize/video.py) are not built yet")


def run(capsys, *argv):
    code = main(["convert", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


@dataclass
class Seen:
    """A clip as ``Station.add_clip`` got it, and its file then (the work folder goes afterwards)."""

    capture: Capture
    md5: list[str]
    stream: dict
    folder: Path


@pytest.fixture
def clips(monkeypatch):
    seen: list[Seen] = []

    def add_clip(_station: Any, capture: Capture) -> None:
        path = capture.encoded_path
        seen.append(Seen(capture, framemd5(path), video_stream(ffprobe(path)), path.parent))

    monkeypatch.setattr(Station, "add_clip", add_clip)
    return seen


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    made = {kind: make_video(folder, kind) for kind in ("h264-bframes", "hevc-hvc1", "hevc10-hvc1", "h264-mov", "vp9",
                                                        "h264-444", "h264-10bit", "mpeg4")}
    made["nameless"] = make_video(folder, "h264-mkv", name="recording")  # a Matroska file without a suffix
    return made


def by_source(seen: list[Seen]) -> dict[str, Seen]:
    return {Path(s.capture.source).name: s for s in seen}


def test_each_video_file_becomes_one_clip(tmp_path, capsys, videos, clips):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in videos.values():
        (inputs / path.name).symlink_to(path)
    out = tmp_path / "out"
    code, _out, err = run(capsys, inputs, "-o", out, *PATIENT)
    assert code == 0, err
    seen = by_source(clips)
    assert sorted(seen) == sorted(p.name for p in videos.values())  # the nameless file found by its bytes
    notes = dict((Path(where).name, note) for where, note in (line.split(": ", 1) for line in err if "/in/" in line))
    assert notes["h264-bframes.mp4"] == "passed through: H.264 High 4.1, 320x240, 25 fps, 2.0 s"
    assert notes["h264.mov"].startswith("passed through: H.264 High")
    assert notes["recording"].startswith("passed through: H.264 High")
    assert notes["hevc-hvc1.mp4"].startswith("passed through: HEVC Main ")
    assert notes["hevc10-hvc1.mp4"].startswith("passed through: HEVC Main 10 ")
    assert notes["vp9.webm"] == ("transcoded: VP9 Profile 0 (DICOM stores H.264 and HEVC video) -> "
                                 "H.264 High 4.1, 320x240, 25 fps, 2.0 s")
    assert notes["h264-444.mp4"].startswith("transcoded: H.264 High 4:4:4 Predictive (DICOM takes High Profile")
    assert notes["h264-10bit.mp4"].startswith("transcoded: H.264 High 10 (DICOM takes High Profile")
    assert notes["mpeg4.avi"].startswith("transcoded: MPEG-4 Part 2")
    for name, clip in seen.items():
        capture = clip.capture
        assert capture.is_clip and capture.kind is SourceKind.FILE_IMPORT and capture.video.frames == 50
        assert capture.pixels.shape == (240, 320, 3)
        assert int(clip.stream["nb_read_frames"]) == 50
        if name in ("h264-bframes.mp4", "h264.mov", "recording", "hevc-hvc1.mp4", "hevc10-hvc1.mp4"):
            assert capture.encoded_path == inputs / name  # the file itself, no copy
            assert clip.md5 == framemd5(inputs / name)
            assert "lossy_history" not in capture.metadata
        else:
            # Transcoded beside the output, in a work folder of its own, gone afterwards.
            assert clip.folder.parent == out and clip.folder.name.startswith(".kiosk-video-")
            assert (clip.stream["codec_name"], clip.stream["profile"], clip.stream["level"]) == ("h264", "High", 41)
            assert (clip.stream["width"], clip.stream["height"]) == (320, 240)
    # The source's own loss is recorded: H.264 4:4:4 and 10-bit by method, VP9 and MPEG-4 Part 2 have no term.
    assert [step[1] for step in seen["h264-444.mp4"].capture.metadata["lossy_history"]] == ["ISO_14496_10"]
    assert [step[1] for step in seen["vp9.webm"].capture.metadata["lossy_history"]] == [None]
    assert seen["vp9.webm"].capture.metadata["lossy_history"][0][0] > 1
    assert not list(out.iterdir())  # work folders cleaned; the stand-in station wrote nothing


def test_unusable_videos_one_line_each_others_converted(tmp_path, capsys, videos, clips):
    folder = tmp_path / "in"
    folder.mkdir()
    good = folder / "good.mp4"
    good.write_bytes(videos["h264-bframes"].read_bytes())
    truncated(videos["h264-bframes"], folder / "cut.mp4")
    truncated(faststart(videos["h264-bframes"], tmp_path / "fast.mp4"), folder / "cut-fast.mp4", 0.6)
    make_audio_only(folder / "voice.m4a")
    (folder / "notes.mp4").write_text("not a video")
    (folder / "zero.mov").write_bytes(b"")
    (folder / "photo.jpg").write_bytes(jpeg_bytes(pixels_of("rgb8")[0], quality=92))
    out = tmp_path / "out"
    code, lines, err = run(capsys, folder, "-o", out, *PATIENT)
    assert code == 1
    errors = [line for line in err if line.startswith("kiosk: error:")]
    expected = {"cut.mp4": "not a video file FFmpeg can read", "cut-fast.mp4": "cut short",
                "voice.m4a": "holds no video stream", "notes.mp4": "has a video name (.mp4) but is not a",
                "zero.mov": "is empty"}
    assert len(errors) == len(expected), errors
    for name, problem in expected.items():
        [line] = [e for e in errors if f"/{name}:" in e]
        assert problem in line and line.count(name) == 1, line  # named once, by its path
    assert "Traceback" not in "\n".join(err)
    assert [Path(s.capture.source).name for s in clips] == ["good.mp4"]
    assert sorted(p.name for p in out.iterdir()) == ["photo.dcm"]  # the image still converted, no work folder
    assert len(lines) == 1 and "photo.jpg" in lines[0]


def test_a_portrait_phone_video_is_transcoded_upright(tmp_path, capsys, videos, clips):
    source = turned(videos["h264-bframes"], tmp_path / "portrait.mov")
    code, _out, err = run(capsys, source, "-o", tmp_path / "out", *PATIENT)
    assert code == 0, err
    assert f"{source}: transcoded: shown turned by 90 degrees (DICOM video has no display rotation) -> " \
           "H.264 High 4.1, 240x320, 25 fps, 2.0 s" in err
    [clip] = clips
    assert (clip.stream["width"], clip.stream["height"]) == (240, 320) and clip.capture.pixels.shape == (320, 240, 3)


def test_a_video_named_on_the_command_line_is_judged_by_its_bytes(tmp_path, capsys, videos, clips):
    odd = tmp_path / "clip.bin"
    odd.write_bytes(videos["vp9"].read_bytes())
    code, _out, err = run(capsys, odd, "-o", tmp_path / "out", *PATIENT)
    assert code == 0, err
    [clip] = clips
    assert clip.stream["codec_name"] == "h264" and any("clip.bin: transcoded: VP9" in line for line in err)


# -- the objects (wait for the video IODs) -----------------------------------------------------------
def _stream_of(ds: pydicom.Dataset, path: Path) -> Path:
    """The encapsulated video stream of ``ds``, written to ``path`` for ffmpeg."""
    fragments = generate_fragments(ds.PixelData)
    next(fragments)  # the Basic Offset Table
    path.write_bytes(b"".join(fragments))
    return path


def _one_object(capsys, video: Path, out: Path, dciodvfy) -> tuple[Path, pydicom.Dataset]:
    """``video`` converted into ``out``: its one object (valid, H.264 High 4.1, 50 frames) and the object read."""
    code, lines, err = run(capsys, video, "-o", out, *PATIENT)
    assert code == 0, err
    [dcm] = sorted(out.glob("*.dcm"))
    dciodvfy(dcm)
    ds = pydicom.dcmread(dcm)
    assert ds.file_meta.TransferSyntaxUID == tsx.H264_HIGH_41.uid and int(ds.NumberOfFrames) == 50
    return dcm, ds


@needs_video_objects
def test_objects_hold_the_passed_through_stream(tmp_path, capsys, videos, dciodvfy):
    _dcm, ds = _one_object(capsys, videos["h264-bframes"], tmp_path / "out", dciodvfy)
    assert (ds.Rows, ds.Columns) == (240, 320)
    assert framemd5(_stream_of(ds, tmp_path / "stream.h264")) == framemd5(videos["h264-bframes"])


@needs_video_objects
def test_objects_hold_the_transcoded_stream(tmp_path, capsys, videos, dciodvfy):
    out = tmp_path / "out"
    dcm, ds = _one_object(capsys, videos["vp9"], out, dciodvfy)
    assert ds.LossyImageCompression == "01"
    stream = video_stream(ffprobe(_stream_of(ds, tmp_path / "stream.h264")))
    assert (stream["codec_name"], stream["profile"], stream["level"]) == ("h264", "High", 41)
    assert int(stream["nb_read_frames"]) == 50
    assert sorted(p.name for p in out.iterdir()) == [dcm.name]  # the work folder is gone
