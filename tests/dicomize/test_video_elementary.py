"""kiosk.video.elementary: a clip's Annex B stream, whole or in parts that each decode alone (ffprobe, framemd5)."""

from __future__ import annotations

import io

import pytest

from kiosk.video import elementary
from kiosk.video.elementary import ElementaryStream, parts, segments, write_elementary
from kiosk.video.facts import VideoError
from kiosk.video.probe import probe
from tests.support.video import (FRAMES, GOP, ffprobe, framemd5, make_video, raw_format, video_stream,
                                 with_parameter_sets_once)

pytest.importorskip("av", reason="PyAV is not installed (pip install kiosk[video])")

SOURCES = ["h264-mp4", "h264-raw", "h264-once", "h264-mkv", "hevc-mp4", "hevc10-mp4"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    made = {kind: make_video(folder, kind) for kind in ("h264-mp4", "h264-raw", "h264-mkv", "hevc-mp4", "hevc10-mp4",
                                                         "hevc-open-gop", "h264-444")}
    made["h264-once"] = with_parameter_sets_once(made["h264-raw"], folder / "once.h264")
    return made


@pytest.mark.parametrize("kind", SOURCES)
def test_the_whole_stream_decodes_to_the_sources_pictures(tmp_path, clips, kind):
    facts = probe(clips[kind])
    out = tmp_path / "stream"
    with out.open("wb") as handle:
        written = write_elementary(clips[kind], handle)
    assert written == out.stat().st_size
    read = video_stream(ffprobe(out, raw_format(facts.codec)))
    assert (read["codec_name"], read["profile"], read["width"], read["height"], int(read["nb_read_frames"])) == \
        (facts.codec, facts.profile, facts.width, facts.height, FRAMES)
    assert framemd5(out, raw_format(facts.codec)) == framemd5(clips[kind])


def test_a_raw_annex_b_file_is_copied_as_it_is(clips):
    out = io.BytesIO()
    write_elementary(clips["h264-raw"], out)
    assert out.getvalue() == clips["h264-raw"].read_bytes()


@pytest.mark.parametrize("kind", SOURCES)
def test_each_part_starts_at_an_idr_picture_and_decodes_alone(tmp_path, clips, kind):
    facts = probe(clips[kind])
    whole = len(_stream(clips[kind]))
    limit = whole // 3
    parts = segments(clips[kind], limit)
    assert len(parts) >= 3 and parts[0][0] == 0 and parts[-1][1] == FRAMES
    assert all(end == start for (_, end), (start, _) in zip(parts, parts[1:]))  # consecutive, nothing left out
    assert all(first in facts.keyframes for first, _ in parts)
    pictures = []
    for number, (first, end) in enumerate(parts):
        out = tmp_path / f"part{number}"
        with out.open("wb") as handle:
            written = write_elementary(clips[kind], handle, first, end)
        assert written <= limit
        read = video_stream(ffprobe(out, raw_format(facts.codec)))
        assert (read["codec_name"], read["profile"], read["level"], int(read["nb_read_frames"])) == \
            (facts.codec, facts.profile, facts.level, end - first)
        pictures += framemd5(out, raw_format(facts.codec))
    assert pictures == framemd5(clips[kind])


def test_a_stream_with_its_parameter_sets_once_gets_them_in_front_of_each_part(clips):
    sps = b"\x00\x00\x01\x67"
    assert clips["h264-once"].read_bytes().count(sps) == 1
    part = _stream(clips["h264-once"], GOP, 2 * GOP)
    assert part.startswith(b"\x00" + sps) and part.count(sps) == 1


def test_a_group_of_pictures_larger_than_the_limit_is_a_part_of_its_own(clips):
    assert segments(clips["h264-mp4"], 1) == [(first, first + GOP) for first in range(0, FRAMES, GOP)]


def test_an_open_gop_hevc_stream_is_split_at_idr_pictures_only(tmp_path, clips):
    path = clips["hevc-open-gop"]
    assert len(probe(path).keyframes) > 1  # CRA keyframes: their leading pictures need the GOP before
    assert segments(path, 1) == [(0, FRAMES)]


def test_a_file_plainly_small_enough_is_not_read(clips, monkeypatch):
    facts = probe(clips["h264-mp4"])
    monkeypatch.setattr(elementary, "_access_units", lambda path: pytest.fail("the file was read"))
    assert segments(clips["h264-mp4"], 10 << 20, facts) == [(0, FRAMES)]


def test_video_dicom_cannot_hold_and_unreadable_files_are_refused_naming_the_file(tmp_path, clips):
    with pytest.raises(VideoError, match=r"mjpeg.mkv: mjpeg video cannot be stored as it is"):
        segments(make_video(tmp_path, "mjpeg"), 1 << 20)
    path = tmp_path / "clip.mp4"
    path.write_bytes(clips["h264-mp4"].read_bytes()[:1000])
    with pytest.raises(VideoError, match="clip.mp4"):
        segments(path, 1 << 20)


def _stream(path, first=0, end=None) -> bytes:
    out = io.BytesIO()
    write_elementary(path, out, first, end)
    return out.getvalue()


@pytest.mark.parametrize("kind", ["h264-mp4", "h264-once"])
def test_the_stream_as_a_file_reads_as_written_in_any_pieces_and_again(clips, kind):
    [_, (first, end, size), _] = parts(clips[kind], len(_stream(clips[kind])) // 3 + 1)[:3]
    expected = _stream(clips[kind], first, end)
    stream = ElementaryStream(clips[kind], first, end)
    assert stream.size == size == len(expected) and stream.seek(0, io.SEEK_END) == size
    stream.seek(0)
    pieces = []
    while piece := stream.read(777):
        pieces.append(piece)
    assert b"".join(pieces) == expected and stream.tell() == size
    stream.seek(1000)
    assert stream.read(5000) == expected[1000:6000]  # from the top again
    stream.seek(size - 10)
    assert stream.read() == expected[-10:]
    stream.close()


def test_a_stream_that_comes_out_longer_than_measured_is_an_error(clips):
    stream = ElementaryStream(clips["h264-mp4"], 0, GOP, size=1000)
    with pytest.raises(VideoError, match="h264.mp4: the video file changed while it was stored"):
        stream.read()
