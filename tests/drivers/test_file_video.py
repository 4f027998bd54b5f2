"""The ``file:`` source with video files (the touch UI's Files source): one clip capture per file, its file
copied or transcoded into a work folder on the session's disk that lasts until the capture is taken."""

from __future__ import annotations

import threading

import pytest

from drivers.errors import CancelledError
from drivers.file_reader import FileLoadError, is_video, load_file, sniff
from drivers.registry import open_device
from kiosk.capture import SourceKind
from kiosk.config import VideoConfig
from tests.support.video import ffprobe, framemd5, make_video, truncated, video_stream

VIDEO = VideoConfig(reserve_mb=0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {kind: make_video(folder, kind) for kind in ("h264-bframes", "vp9", "h264-mov", "h264-mkv", "mpeg4")}


def test_video_containers_are_known_by_their_bytes(videos, tmp_path):
    assert {kind: sniff(path.read_bytes()[:16]) for kind, path in videos.items()} == \
        {"h264-bframes": "MP4", "vp9": "Matroska", "h264-mov": "MP4", "h264-mkv": "Matroska", "mpeg4": "AVI"}
    odd = tmp_path / "noname"
    odd.write_bytes(videos["h264-mov"].read_bytes())
    assert is_video(odd) and not is_video(tmp_path / "missing.mp4")
    (tmp_path / "fake.mp4").write_text("hello")
    assert not is_video(tmp_path / "fake.mp4")
    with pytest.raises(FileLoadError, match="fake.mp4: has a video name"):
        load_file(tmp_path / "fake.mp4")
    with pytest.raises(FileLoadError, match="is a video"):
        load_file(videos["h264-bframes"])  # images and PDFs only: videos go through drivers.video_file


def test_a_conforming_file_is_copied_into_the_work_folder(videos, tmp_path):
    session = tmp_path / "session"
    with open_device(f"file:{videos['h264-bframes']}", {"work_dir": session, "video": VIDEO}) as device:
        batch = device.batch()
        [capture] = [next(batch)]
        work = capture.encoded_path.parent
        assert work.parent == session and work.name.startswith(".kiosk-video-")
        assert capture.encoded_path.read_bytes() == videos["h264-bframes"].read_bytes()  # a copy: the original stays
        assert capture.encoded_path.stat().st_mode & 0o777 == 0o600 and work.stat().st_mode & 0o777 == 0o700
        assert capture.is_clip and capture.kind is SourceKind.FILE_IMPORT
        assert capture.source == str(videos["h264-bframes"])
        assert list(batch) == []  # the batch ends: the work folder goes
    assert not work.exists() and videos["h264-bframes"].exists()


def test_a_non_conforming_file_is_transcoded_with_progress(videos, tmp_path):
    steps = []
    with open_device(f"file:{videos['vp9']}", {"work_dir": tmp_path, "video": VIDEO}) as device:
        for capture in device.batch(steps.append):
            stream = video_stream(ffprobe(capture.encoded_path))
            assert (stream["codec_name"], stream["profile"], stream["level"]) == ("h264", "High", 41)
            assert len(framemd5(capture.encoded_path)) == 50
    assert steps and steps[-1].fraction == 1.0 and "H.264" in steps[-1].message
    assert list(tmp_path.iterdir()) == []


def test_cancelled_while_transcoding(videos, tmp_path):
    started = threading.Event()
    with open_device(f"file:{videos['mpeg4']}", {"work_dir": tmp_path, "video": VIDEO}) as device:
        def progress(step):
            started.set()
            device.cancel()

        with pytest.raises(CancelledError):
            list(device.batch(progress))
    assert started.is_set() and list(tmp_path.iterdir()) == []


def test_a_damaged_video_names_the_file(videos, tmp_path):
    cut = truncated(videos["h264-bframes"], tmp_path / "cut.mp4")
    with open_device(f"file:{cut}", {"work_dir": tmp_path / "work", "video": VIDEO}) as device:
        with pytest.raises(FileLoadError, match=r"cut.mp4: not a video file FFmpeg can read"):
            list(device.batch())
    assert list((tmp_path / "work").iterdir()) == []
