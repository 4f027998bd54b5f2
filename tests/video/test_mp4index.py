"""The MP4/MOV sample table read without demuxing (kiosk.video.mp4index) against PyAV's demuxing, and clip
objects whose H.264 stream is written from the samples (kiosk.video.samplecopy) against pydicom's
own writing, ffprobe and framemd5."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess

import pydicom
import pytest
from pydicom.encaps import generate_fragments

from kiosk.dicomize.batch import BuildOptions
from kiosk.dicomize.builder import build_datasets, write_dataset
from kiosk.errors import KioskError
from kiosk.part10 import split_self_copying
from kiosk.study import StudyContext
from kiosk.video import probe as probe_module
from kiosk.video.mp4index import read_index
from kiosk.video.probe import probe
from tests.support.peers import require_binary
from tests.support.video import (FRAMES, clip_of, faststart, ffprobe, framemd5, make_video, raw_format, truncated,
                                 video_stream)

STUDY = StudyContext(patient_name="MP4^INDEX", patient_id="MP4")
INDEXED = ("h264-mp4", "h264-bframes", "h264-no-bframes", "h264-mov", "h264-10bit", "hevc-hvc1", "hevc-mp4",
           "fragmented", "fragmented-bframes", "fragmented-hevc")
FRAGMENTED = {"fragmented": "h264-mp4", "fragmented-bframes": "h264-bframes", "fragmented-hevc": "hevc-hvc1"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mp4index")
    made = {kind: make_video(folder, kind) for kind in (*INDEXED, "h264-raw", "h264-mkv") if kind not in FRAGMENTED}
    for kind, source in FRAGMENTED.items():  # as the recorder writes them
        made[kind] = folder / f"{kind}.mp4"
        subprocess.run([require_binary("ffmpeg"), "-nostdin", "-loglevel", "error", "-y", "-i", str(made[source]),
                        "-c", "copy", "-movflags", "frag_keyframe+empty_moov", str(made[kind])], check=True)
    made["cut_fast"] = truncated(faststart(made["h264-bframes"], folder / "fast.mp4"), folder / "cut-fast.mp4", 0.6)
    # A recording the kiosk did not finish (a power cut): its last fragment runs past the end of the file.
    made["cut_fragmented"] = truncated(made["fragmented-bframes"], folder / "cut-fragmented.mp4", 0.6)
    return made


def _demuxed(path, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(probe_module, "_index", lambda *args: None)
        return probe(path)


@pytest.mark.parametrize("kind", INDEXED)
def test_the_index_gives_the_facts_demuxing_gives(files, kind, monkeypatch):
    index = read_index(files[kind])
    assert index is not None and index.frames == FRAMES
    assert probe(files[kind]) == _demuxed(files[kind], monkeypatch)


def test_a_fragmented_file_lists_the_samples_of_its_fragments(files):
    plain, fragmented = read_index(files["h264-bframes"]), read_index(files["fragmented-bframes"])
    assert list(fragmented.sizes) == list(plain.sizes) and fragmented.sync == plain.sync
    assert fragmented.has_ctts and fragmented.offsets != plain.offsets
    data = files["fragmented-bframes"].read_bytes()
    for offset, size in zip(fragmented.offsets, fragmented.sizes):  # each sample is its NAL units
        at = offset
        while at < offset + size:
            at += 4 + int.from_bytes(data[at:at + 4], "big")
        assert at == offset + size


@pytest.mark.parametrize("kind", ["h264-raw", "h264-mkv", "cut_fast", "cut_fragmented"])
def test_files_the_index_does_not_read_are_demuxed(files, kind, monkeypatch):
    assert read_index(files[kind]) is None
    if kind.startswith("cut_"):
        with pytest.raises(KioskError, match=f"{files[kind].name}: the video is (damaged or )?cut short"):
            probe(files[kind])
    else:
        assert probe(files[kind]).frames == FRAMES


def test_a_recordings_fragments_are_read_one_read_each(files, monkeypatch):
    from kiosk.video import mp4index

    path = files["fragmented-bframes"]
    fragments = path.read_bytes().count(b"moof")
    reads = []
    real = os.pread
    monkeypatch.setattr(mp4index.os, "pread", lambda fd, n, at: reads.append(at) or real(fd, n, at))
    assert mp4index._read(path).frames == FRAMES
    assert 1 < fragments <= len(reads) <= fragments + 2  # and the ftyp and moov boxes


def test_an_index_past_the_end_of_the_file_is_refused(files, tmp_path):
    data = files["h264-mp4"].read_bytes()  # moov at the end: drop the last sample's bytes from the mdat
    at = data.index(b"moov") - 4
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:at - 3000] + data[at:])
    assert read_index(cut) is None


def test_a_file_keeps_its_index_where_it_is_moved_and_is_read_again_once_changed(files, tmp_path, monkeypatch):
    from kiosk.video import mp4index

    clip = tmp_path / "recorded.mp4"
    clip.write_bytes(files["fragmented"].read_bytes())
    first = read_index(clip)
    moved = clip.rename(tmp_path / "in-the-session.mp4")
    monkeypatch.setattr(mp4index, "_top_level", lambda *args: pytest.fail("a moved file was read again"))
    assert read_index(moved) is first and first.frames == FRAMES
    monkeypatch.undo()
    before = moved.stat()
    with moved.open("r+b") as handle:  # overwritten in place: the same file and size, no MP4 any more
        handle.write(bytes(before.st_size))
    os.utime(moved, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))  # however coarse the clock
    assert read_index(moved) is None


@pytest.mark.parametrize("chunk", [5, 6, 7, 8, 1001])
def test_the_streams_pieces_copy_and_hash_agree_whatever_the_block_size(files, tmp_path, monkeypatch, chunk):
    from kiosk.video import samplecopy

    path = files["fragmented-bframes"]
    made = samplecopy.plan(path, read_index(path))
    copied, digest = tmp_path / "copied", hashlib.sha256()
    with open(copied, "wb+") as target:
        target.write(b"header")
        target.flush()
        made.copy(target.fileno(), 6, digest)
    stream = copied.read_bytes()[6:]
    assert len(stream) == made.size and stream.startswith(b"\0\0\0\1")
    assert digest.hexdigest() == hashlib.sha256(stream).hexdigest()
    monkeypatch.setattr(samplecopy, "READ_CHUNK", chunk)  # blocks ending inside a NAL length, or not
    assert b"".join(made.pieces()) == stream
    with open(tmp_path / "small-blocks", "wb+") as target:
        made.copy(target.fileno(), 0)
    assert (tmp_path / "small-blocks").read_bytes() == stream
    again = hashlib.sha256()
    for piece in made.pieces(buffers=1):
        again.update(piece)
    assert again.hexdigest() == digest.hexdigest()


def test_a_clip_is_read_once_when_stored_its_keyframes_headers_before(files, monkeypatch):
    from kiosk.video import samplecopy

    path = files["fragmented-bframes"]
    index = read_index(path)
    read = []
    real = os.preadv
    monkeypatch.setattr(samplecopy.os, "preadv", lambda fd, buffers, at: read.append(real(fd, buffers, at)) or read[-1])
    monkeypatch.setattr(samplecopy, "HEADER_BLOCK", 16)  # a few NAL headers a read
    made = samplecopy.plan(path, index)
    assert 0 < sum(read) <= 16 * 4 * len(index.sync) < sum(index.sizes) / 4
    read.clear()
    assert sum(map(len, made.pieces())) == made.size
    assert sum(read) == sum(index.sizes)


def test_a_damaged_sample_gives_a_message_naming_the_file_and_no_object(files, tmp_path):
    data = bytearray(files["h264-no-bframes"].read_bytes())
    index = read_index(files["h264-no-bframes"])
    sample = next(n for n in range(index.frames) if n not in index.sync)
    at = index.offsets[sample]
    data[at:at + 4] = (int.from_bytes(data[at:at + 4], "big") + 1).to_bytes(4, "big")  # one byte too long
    clip = tmp_path / "damaged.mp4"
    clip.write_bytes(data)
    [ds] = build_datasets([clip_of(clip)], STUDY, BuildOptions(modality="ES"))
    with pytest.raises(KioskError, match="damaged.mp4: the video file is damaged"):
        write_dataset(ds, tmp_path / "out.dcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.mp4"]


def _fragment(path) -> bytes:
    table, *fragments = generate_fragments(pydicom.dcmread(path).PixelData)
    assert table == b"" and len(fragments) == 1
    return fragments[0]


@pytest.mark.parametrize("kind", ["h264-mp4", "h264-bframes", "h264-mov", "fragmented-bframes"])
def test_a_clip_object_written_from_the_samples_is_the_file_pydicom_writes(files, tmp_path, kind):
    [ds] = build_datasets([clip_of(files[kind])], STUDY, BuildOptions(modality="ES"))
    assert split_self_copying(ds) is not None
    written = write_dataset(ds, tmp_path / "clip.dcm")
    by_pydicom = io.BytesIO()
    ds.save_as(by_pydicom, enforce_file_format=True)
    assert written.read_bytes() == by_pydicom.getvalue()
    stream = tmp_path / "clip.h264"
    stream.write_bytes(_fragment(written))
    assert framemd5(stream, "h264") == framemd5(files[kind])
    assert int(video_stream(ffprobe(stream, "h264"))["nb_read_frames"]) == ds.NumberOfFrames == FRAMES


def test_the_parts_of_a_long_clip_are_written_from_the_samples_too(files, tmp_path):
    source = files["h264-no-bframes"]
    limit = 64 * 1024 + os.path.getsize(source) // 3
    datasets = build_datasets([clip_of(source)], STUDY, BuildOptions(modality="ES", max_object_bytes=limit))
    assert len(datasets) >= 2 and all(split_self_copying(ds) is not None for ds in datasets)
    pictures = []
    for n, ds in enumerate(datasets):
        path = write_dataset(ds, tmp_path / f"{n}.dcm")
        assert path.stat().st_size <= limit
        stream = tmp_path / f"{n}.h264"
        stream.write_bytes(_fragment(path))  # each part decodes alone: its parameter sets first
        assert int(video_stream(ffprobe(stream, raw_format("h264")))["nb_read_frames"]) == ds.NumberOfFrames
        pictures += framemd5(stream, "h264")
    assert pictures == framemd5(source)


def test_hevc_and_other_streams_keep_pydicoms_writing(files):
    for kind in ("hevc-hvc1", "h264-raw", "h264-mkv", "fragmented-hevc"):
        [ds] = build_datasets([clip_of(files[kind])], STUDY, BuildOptions(modality="ES"))
        assert split_self_copying(ds) is None


def test_an_mp4_cut_after_its_object_was_built_gives_no_file(files, tmp_path):
    clip = tmp_path / "clip.mp4"
    data = files["h264-mp4"].read_bytes()
    clip.write_bytes(data)
    [ds] = build_datasets([clip_of(clip)], STUDY, BuildOptions(modality="ES"))
    clip.write_bytes(data[:len(data) // 2])
    with pytest.raises(KioskError, match="clip.mp4: the video file changed while it was stored"):
        write_dataset(ds, tmp_path / "out.dcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
