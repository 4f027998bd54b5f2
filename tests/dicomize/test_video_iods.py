"""The video and VL objects: the IOD the modality picks, dciodvfy, the stream as ffprobe and framemd5 read it,
long clips split into objects that each decode alone, and the outputs writing them without holding them."""

from __future__ import annotations

import datetime as dt
import os

import pydicom
import pytest
from pydicom.encaps import generate_fragments

from kiosk import transfer_syntaxes as tsx
from kiosk.capture import Capture, EncodedFormat, SourceKind
from kiosk.dicomize import Batch, BuildOptions, PixelError, build_datasets, write_dataset
from kiosk.errors import KioskError
from kiosk.study import StudyContext
from tests.support.dicomize_helpers import jpeg_bytes, pixels_of
from tests.support.paths import ROOT
from tests.support.peers import dciodvfy as run_dciodvfy
from tests.support.video import FRAMES, RATE, clip_of, ffprobe, framemd5, make_video, raw_format, video_stream

pytest.importorskip("av", reason="PyAV is not installed (pip install kiosk[video])")

STUDY = StudyContext.manual(patient_name="DOE^JANE", patient_id="PID1", birth_date="19800101", sex="F")
VIDEO = "1.2.840.10008.5.1.4.1.1.77.1.{}.1"
CLIPS = {  # (modality, source) -> SOP class
    ("ES", SourceKind.VIDEO_FRAME): VIDEO.format(1),
    ("ES", SourceKind.FILE_IMPORT): VIDEO.format(1),
    ("XC", SourceKind.VIDEO_FRAME): VIDEO.format(4),
    ("GM", SourceKind.VIDEO_FRAME): VIDEO.format(2),
    ("OT", SourceKind.VIDEO_FRAME): pydicom.uid.MultiFrameTrueColorSecondaryCaptureImageStorage,
    ("OT", SourceKind.FILE_IMPORT): pydicom.uid.MultiFrameTrueColorSecondaryCaptureImageStorage,
}
STILLS = {"ES": "1.2.840.10008.5.1.4.1.1.77.1.1", "XC": "1.2.840.10008.5.1.4.1.1.77.1.4",
          "GM": "1.2.840.10008.5.1.4.1.1.77.1.2", "OT": pydicom.uid.SecondaryCaptureImageStorage}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {kind: make_video(folder, kind) for kind in ("h264-mp4", "h264-raw", "hevc-mp4", "hevc10-mp4", "h264-444")}


def _objects(capture: Capture, modality: str, **options) -> list:
    return build_datasets([capture], STUDY, BuildOptions(modality=modality, **options))


def _written(tmp_path, datasets) -> list:
    """The objects written as files and read back (pixel data fragments included)."""
    return [pydicom.dcmread(write_dataset(ds, tmp_path / f"{n}.dcm")) for n, ds in enumerate(datasets)]


def _stream_of(ds, path) -> bytes:
    """The object's one fragment (after the empty Basic Offset Table), also written to ``path``."""
    table, *fragments = generate_fragments(ds.PixelData)
    assert table == b"" and len(fragments) == 1
    path.write_bytes(fragments[0])
    return fragments[0]


def dciodvfy(path, allowed=()):
    """dciodvfy; HEVC objects are checked with the H.264 syntax in their file meta, since this dciodvfy
    (2022) knows no HEVC syntax (it reads the pixel data as native and stops). ``allowed``: its errors that
    the standard since resolved (8-bit-only VL images, before HEVC Main 10) and are allowed here, exactly."""
    ds = pydicom.dcmread(path)
    if ds.file_meta.TransferSyntaxUID in (tsx.HEVC_MAIN.uid, tsx.HEVC_MAIN10.uid):
        ds.file_meta.TransferSyntaxUID = tsx.H264_HIGH_41.uid
        path = path.with_name(path.stem + "-as-h264.dcm")
        ds.save_as(path)
    if not allowed:
        return run_dciodvfy(path)
    import subprocess

    from tests.support.peers import require_binary

    output = subprocess.run([require_binary("dciodvfy"), str(path)], capture_output=True, text=True).stderr
    assert sorted(line for line in output.splitlines() if line.startswith("Error")) == sorted(allowed), output
    return output


@pytest.mark.parametrize("modality,kind", list(CLIPS), ids=lambda v: getattr(v, "name", v))
def test_each_clip_iod_is_valid_and_holds_the_sources_stream(tmp_path, clips, modality, kind):
    capture = clip_of(clips["h264-mp4"], kind, lossy_history=[[None, "ISO_10918_1"]])
    [ds] = _written(tmp_path, _objects(capture, modality))
    dciodvfy(tmp_path / "0.dcm")
    assert ds.SOPClassUID == CLIPS[modality, kind] and ds.Modality == modality
    assert ds.file_meta.TransferSyntaxUID == tsx.H264_HIGH_41.uid
    assert (ds.Rows, ds.Columns, ds.NumberOfFrames, ds.SamplesPerPixel, ds.PhotometricInterpretation) == \
        (240, 320, FRAMES, 3, "YBR_PARTIAL_420")
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.PlanarConfiguration) == (8, 8, 7, 0, 0)
    assert float(ds.FrameTime) == 1000 / RATE and ds.FrameIncrementPointer == pydicom.tag.Tag("FrameTime")
    assert ds.CineRate == ds.RecommendedDisplayFrameRate == RATE and ds.ActualFrameDuration == 1000 // RATE
    # The MJPEG card's step, then H.264's; the card's ratio is unknown, so no ratios at all.
    assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == ["ISO_10918_1", "ISO_14496_10"]
    assert "LossyImageCompressionRatio" not in ds
    if ds.SOPClassUID.startswith("1.2.840.10008.5.1.4.1.1.77"):
        assert ds.ImageType == ["ORIGINAL" if kind is SourceKind.VIDEO_FRAME else "DERIVED", "PRIMARY"]
        assert len(ds.AnatomicRegionSequence) == 1 and ds.AcquisitionContextSequence == []
        assert "ConversionType" not in ds and "DateOfSecondaryCapture" not in ds
    else:
        assert ds.ConversionType == ("DV" if kind is SourceKind.VIDEO_FRAME else "DI")
    stream = tmp_path / "stream.h264"
    _stream_of(ds, stream)
    read = video_stream(ffprobe(stream, "h264"))
    assert (read["codec_name"], read["profile"], read["level"], read["width"], read["height"]) == \
        ("h264", "High", 41, 320, 240)
    assert int(read["nb_read_frames"]) == ds.NumberOfFrames
    assert framemd5(stream, "h264") == framemd5(clips["h264-mp4"])


def test_a_raw_h264_file_is_stored_byte_for_byte_with_its_ratio(tmp_path, clips):
    [ds] = _written(tmp_path, _objects(clip_of(clips["h264-raw"], SourceKind.FILE_IMPORT), "XC"))
    data = clips["h264-raw"].read_bytes()
    stream = _stream_of(ds, tmp_path / "s.h264")
    assert stream[:len(data)] == data and len(stream) - len(data) == len(data) % 2  # padded to even length
    assert float(ds.LossyImageCompressionRatio) == pytest.approx(320 * 240 * 3 * FRAMES / len(data), rel=0.01)
    assert ds.LossyImageCompressionMethod == "ISO_14496_10"


@pytest.mark.parametrize("kind,syntax,bits", [("hevc-mp4", tsx.HEVC_MAIN, (8, 8, 7)),
                                              ("hevc10-mp4", tsx.HEVC_MAIN10, (16, 10, 9))])
@pytest.mark.parametrize("modality", ["ES", "OT"])
def test_hevc_clips_main_and_main_10(tmp_path, clips, kind, syntax, bits, modality):
    [ds] = _written(tmp_path, _objects(clip_of(clips[kind]), modality))
    ten_bit_errors = [f"Error - Unrecognized enumerated value <{hex(v)}> for value 1 of attribute <{name}>"
                      for v, name in ((16, "Bits Allocated"), (10, "Bits Stored"), (9, "High Bit"))]
    dciodvfy(tmp_path / "0.dcm", allowed=ten_bit_errors if bits[0] == 16 else ())
    assert ds.file_meta.TransferSyntaxUID == syntax.uid
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == bits
    assert ds.LossyImageCompressionMethod == "ISO_23008_2"
    stream = tmp_path / "s.hevc"
    _stream_of(ds, stream)
    read = video_stream(ffprobe(stream, "hevc"))
    assert (read["codec_name"], read["profile"], int(read["nb_read_frames"])) == \
        ("hevc", "Main 10" if bits[0] == 16 else "Main", ds.NumberOfFrames)
    assert framemd5(stream, "hevc") == framemd5(clips[kind])


@pytest.mark.parametrize("kind", ["h264-mp4", "hevc-mp4"])
def test_a_long_clip_becomes_consecutive_objects_of_one_series(tmp_path, clips, kind):
    capture = clip_of(clips[kind])
    limit = 64 * 1024 + os.path.getsize(clips[kind]) // 3  # header room + a third of the stream
    still = Capture(SourceKind.VIDEO_FRAME, pixels=pixels_of("rgb8")[0])
    datasets = build_datasets([still, capture, still], STUDY, BuildOptions(modality="ES", max_object_bytes=limit))
    objects = _written(tmp_path, datasets)
    clips_ = objects[1:-1]
    assert len(clips_) >= 3
    assert [ds.InstanceNumber for ds in objects] == list(range(1, len(objects) + 1))
    assert {ds.SeriesInstanceUID for ds in objects} == {objects[0].SeriesInstanceUID}
    assert [ds.ImageComments for ds in clips_] == [f"part {n} of {len(clips_)}" for n in range(1, len(clips_) + 1)]
    assert {ds.FrameTime for ds in clips_} == {clips_[0].FrameTime}
    assert sum(ds.NumberOfFrames for ds in clips_) == FRAMES
    delays = [float(ds.FrameDelay) for ds in clips_]
    assert delays[0] == 0 and delays == sorted(delays)  # where each part starts, from Content Time
    pictures = []
    for n, ds in enumerate(clips_, 1):
        assert os.path.getsize(tmp_path / f"{n}.dcm") <= limit
        dciodvfy(tmp_path / f"{n}.dcm")
        stream = tmp_path / f"part{n}"
        _stream_of(ds, stream)
        assert int(video_stream(ffprobe(stream, raw_format(capture.video.codec)))["nb_read_frames"]) == \
            ds.NumberOfFrames
        pictures += framemd5(stream, raw_format(capture.video.codec))
    assert pictures == framemd5(clips[kind])


@pytest.mark.parametrize("modality", list(STILLS))
def test_video_stills_are_vl_images_in_vl_series(tmp_path, modality):
    still = Capture(SourceKind.VIDEO_FRAME, pixels=pixels_of("rgb8")[0], acquired_at=dt.datetime(2026, 1, 2, 3, 4, 5))
    [ds] = _written(tmp_path, _objects(still, modality))
    dciodvfy(tmp_path / "0.dcm")
    assert ds.SOPClassUID == STILLS[modality] and ds.Modality == modality
    assert ds.AcquisitionDateTime == "20260102030405"


def test_a_jpeg_frame_of_an_mjpeg_card_is_kept_in_a_vl_endoscopic_image(tmp_path):
    frame = jpeg_bytes(pixels_of("rgb8")[0], quality=85)
    still = Capture(SourceKind.VIDEO_FRAME, encoded=frame, encoded_format=EncodedFormat.JPEG)
    [ds] = _written(tmp_path, _objects(still, "ES"))
    dciodvfy(tmp_path / "0.dcm")
    assert ds.SOPClassUID == STILLS["ES"] and ds.PhotometricInterpretation == "YBR_FULL_422"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    fragment = list(generate_fragments(ds.PixelData))[1]
    assert fragment[:len(frame)] == frame


def test_a_scanned_page_in_an_endoscopy_session_stays_secondary_capture(tmp_path):
    page = Capture(SourceKind.SCANNED_DOCUMENT, pixels=pixels_of("gray8")[0])
    [ds] = _written(tmp_path, _objects(page, "ES"))
    dciodvfy(tmp_path / "0.dcm")
    assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage and ds.Modality == "ES"


@pytest.mark.parametrize("iod,sop_class,modality", [
    ("endoscopic", VIDEO.format(1), "ES"), ("photographic", VIDEO.format(4), "XC"),
    ("secondary-capture", pydicom.uid.MultiFrameTrueColorSecondaryCaptureImageStorage, "ES")])
def test_video_iod_setting_picks_the_objects_whatever_the_modality(tmp_path, clips, iod, sop_class, modality):
    still = Capture(SourceKind.VIDEO_FRAME, pixels=pixels_of("rgb8")[0])
    objects = _written(tmp_path, build_datasets([clip_of(clips["h264-mp4"]), still], STUDY,
                                                BuildOptions(modality="ES", video_iod=iod)))
    for n in range(2):
        dciodvfy(tmp_path / f"{n}.dcm")
    assert objects[0].SOPClassUID == sop_class
    assert {ds.Modality for ds in objects} == {modality}


def test_a_clip_is_never_joined_to_the_stills_around_it(clips):
    stills = [Capture(SourceKind.VIDEO_FRAME, pixels=pixels_of("rgb8")[0]) for _ in range(2)]
    clip = clip_of(clips["h264-mp4"])
    groups = list(Batch(STUDY, BuildOptions(multiframe=True)).plan([stills[0], clip, stills[1]]))
    assert groups == [[stills[0]], [clip], [stills[1]]]


def test_a_stream_dicom_does_not_take_as_it_is_is_an_error_naming_the_file(clips):
    with pytest.raises(PixelError, match=r"h264-444.mp4: H.264 High 4:4:4 .* cannot be stored as it is"):
        _objects(clip_of(clips["h264-444"]), "ES")


def test_build_one_refuses_a_clip(clips):
    with pytest.raises(ValueError, match="Batch.objects"):
        Batch(STUDY).build_one([clip_of(clips["h264-mp4"])])


def test_an_object_written_twice_is_the_same_file(tmp_path, clips):
    [ds] = _objects(clip_of(clips["h264-mp4"]), "ES")
    first, second = write_dataset(ds, tmp_path / "a.dcm"), write_dataset(ds, tmp_path / "b.dcm")
    assert first.read_bytes() == second.read_bytes()


def test_a_clip_changed_before_its_object_is_written_gives_no_file(tmp_path, clips):
    clip = tmp_path / "clip.h264"
    clip.write_bytes(clips["h264-raw"].read_bytes())
    [ds] = _objects(clip_of(clip), "ES")
    clip.write_bytes(clips["h264-raw"].read_bytes()[:20000])  # the stream is made from the file when written
    with pytest.raises(KioskError, match="clip.h264: the video file changed while it was stored"):
        write_dataset(ds, tmp_path / "out.dcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.h264"]


def test_docs_list_the_video_transfer_syntaxes():
    section = (ROOT / "docs" / "objects.md").read_text().split("## Video")[1].split("\n## ")[0]
    table = section.split("### Transfer syntaxes")[1].split("\n### ")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| ") and "UID" not in line]
    assert {(title, uid, method) for title, uid, method, _ in rows} == {(r.title, r.uid, r.method) for r in tsx.VIDEO}
    written = {uid for _, uid, _, use in rows if use.startswith("written")}
    assert written == {tsx.H264_HIGH_41.uid, tsx.H264_HIGH_42.uid, tsx.HEVC_MAIN.uid, tsx.HEVC_MAIN10.uid}
