"""Every object the builder can produce passes dciodvfy; lossless ones decode bit-exactly."""

from __future__ import annotations

import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from tests.support.dicomize_helpers import capture_of, pixels_of
from kiosk.capture import Capture, EncodedFormat, SourceKind
from kiosk.dicomize import BuildOptions, EncodeError, build_datasets, write_dataset
from kiosk.study import StudyContext
from tests.support.peers import require_binary

STUDY = StudyContext.manual(patient_name="DOE^JANE", patient_id="PID1", birth_date="19800101", sex="F")
PIXEL_KINDS = ["gray8", "rgb8", "gray12", "gray16", "bit1", "jpeg-rgb", "jpeg-gray"]
TRANSFER_SYNTAXES = ["explicit", "implicit", "rle", "jpeg-ls", "j2k", "j2k-lossy", "jpeg", "auto"]
LOSSLESS = {"explicit", "implicit", "rle", "jpeg-ls", "j2k"}
SOURCES = {"gray8": SourceKind.SCANNED_DOCUMENT, "rgb8": SourceKind.SCANNED_IMAGE,
           "gray12": SourceKind.DIGITIZED_FILM, "gray16": SourceKind.DIGITIZED_FILM,
           "bit1": SourceKind.SCANNED_DOCUMENT, "jpeg-rgb": SourceKind.FILE_IMPORT, "jpeg-gray": SourceKind.VIDEO_FRAME}


def _combos():
    for multiframe in (False, True):
        for kind in PIXEL_KINDS:
            for mono1 in ((False, True) if kind in ("gray8", "gray12", "bit1") else (False,)):
                for ts in TRANSFER_SYNTAXES:
                    if ts == "jpeg" and kind in ("gray12", "gray16"):
                        continue  # refused, see test_jpeg_baseline_refuses_16_bit
                    yield pytest.param(multiframe, kind, mono1, ts,
                                       id=f"{'mf' if multiframe else 'sf'}-{kind}{'-mono1' if mono1 else ''}-{ts}")


def _captures(kind: str, multiframe: bool) -> list[Capture]:
    frames = 3 if multiframe else 1
    extra = {"frame_rate": 25.0} if kind == "jpeg-gray" else {}
    return [capture_of(kind, SOURCES[kind], seed=i, index=i, **extra) for i in range(frames)]


@pytest.mark.parametrize("multiframe,kind,mono1,ts", list(_combos()))
def test_every_combination_is_valid(tmp_path, dciodvfy, multiframe, kind, mono1, ts):
    captures = _captures(kind, multiframe)
    options = BuildOptions(transfer_syntax=ts, multiframe=multiframe, monochrome1=mono1,
                           institution_name="St. Test", series_description="test series")
    [ds] = build_datasets(captures, STUDY, options)
    path = write_dataset(ds, tmp_path / "out.dcm")
    dciodvfy(path)
    back = pydicom.dcmread(path)
    assert back.file_meta.ImplementationClassUID.startswith("2.25.")
    assert back.file_meta.ImplementationVersionName.startswith("KIOSK_")
    assert back.ImageType == ["DERIVED", "SECONDARY"]
    if multiframe:
        assert back.NumberOfFrames == 3
        assert "MultiFrame" in back.SOPClassUID.keyword
    expect_lossy = ts in ("j2k-lossy", "jpeg") or kind.startswith("jpeg-")
    assert back.LossyImageCompression == ("01" if expect_lossy else "00")
    if ts in LOSSLESS and not kind.startswith("jpeg-"):
        _assert_bit_exact(back, captures, mono1 and not multiframe)
    if mono1:
        assert back.PhotometricInterpretation == ("MONOCHROME2" if multiframe else "MONOCHROME1")


def _assert_bit_exact(ds, captures, mono1):
    decoded = ds.pixel_array
    for i, capture in enumerate(captures):
        frame = decoded[i] if "NumberOfFrames" in ds and ds.NumberOfFrames > 1 else decoded
        expected = capture.pixels
        if expected.dtype == np.bool_:
            expected = expected.astype(np.uint8) * (1 if ds.BitsAllocated == 1 else 255)
        if mono1:
            expected = ((1 << ds.BitsStored) - 1) - expected.astype(np.int64)
        assert np.array_equal(frame.astype(np.int64), expected.astype(np.int64)), f"frame {i} differs"


@pytest.mark.parametrize("ts", ["auto", "jpeg"])
def test_jpeg_passthrough_keeps_the_stream(tmp_path, ts):
    capture = capture_of("jpeg-rgb", SourceKind.FILE_IMPORT)
    [ds] = build_datasets([capture], STUDY, BuildOptions(transfer_syntax=ts))
    back = pydicom.dcmread(write_dataset(ds, tmp_path / "p.dcm"))
    [fragment] = list(generate_frames(back.PixelData, number_of_frames=1))
    original = capture.encoded
    assert fragment[:len(original)] == original and len(fragment) - len(original) <= 1
    assert back.PhotometricInterpretation == "YBR_FULL_422"
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    ratio = float(back.LossyImageCompressionRatio)
    assert ratio == pytest.approx(48 * 40 * 3 / len(original), rel=0.01)
    assert back.LossyImageCompressionMethod == "ISO_10918_1"


def test_jpeg_passthrough_photometric_follows_the_colour_space(tmp_path, dciodvfy):
    from tests.support.dicomize_helpers import jpeg_bytes

    rgb, _ = pixels_of("rgb8")
    gray, _ = pixels_of("gray8")
    cases = {"MONOCHROME2": jpeg_bytes(gray), "YBR_FULL_422": jpeg_bytes(rgb, subsampling=1),
             "RGB": jpeg_bytes(rgb, keep_rgb=True)}  # keep_rgb: Adobe marker, transform 0
    cases_420 = jpeg_bytes(rgb, subsampling=2)
    # ffmpeg writes 4:2:2 as luma 2x2, chroma 1x2 (capture cards' MJPEG looks the same).
    ffmpeg_422 = subprocess.run([require_binary("ffmpeg"), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                                 "testsrc2=size=64x48", "-frames:v", "1", "-pix_fmt", "yuvj422p", "-c:v", "mjpeg",
                                 "-f", "image2pipe", "-"], capture_output=True, check=True).stdout
    for expected, data in [*cases.items(), ("YBR_FULL_422", cases_420), ("YBR_FULL_422", ffmpeg_422)]:
        capture = Capture(SourceKind.FILE_IMPORT, encoded=data, encoded_format=EncodedFormat.JPEG)
        [ds] = build_datasets([capture], STUDY)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
        assert ds.PhotometricInterpretation == expected
        dciodvfy(write_dataset(ds, tmp_path / f"{expected}.dcm"))


@pytest.mark.parametrize("multiframe", [False, True])
@pytest.mark.parametrize("ts", ["auto", "jpeg"])
def test_jpeg_444_ycbcr_is_stored_anew_not_labelled_ybr_full(tmp_path, dciodvfy, ts, multiframe):
    """YBR_FULL is not allowed with JPEG Baseline: a 4:4:4 YCbCr file is decoded, then stored
    losslessly (auto) or re-encoded 4:2:2 (jpeg); either way its JPEG history is kept."""
    from tests.support.dicomize_helpers import jpeg_bytes

    from kiosk.jpeg import parse_jpeg

    captures = [Capture(SourceKind.FILE_IMPORT, encoded=jpeg_bytes(pixels_of("rgb8", i)[0], subsampling=0),
                        encoded_format=EncodedFormat.JPEG, index=i) for i in range(3 if multiframe else 1)]
    [ds] = build_datasets(captures, STUDY, BuildOptions(transfer_syntax=ts, multiframe=multiframe))
    path = write_dataset(ds, tmp_path / "444.dcm")
    dciodvfy(path)
    back = pydicom.dcmread(path)
    method = back["LossyImageCompressionMethod"]
    methods = list(method.value) if method.VM > 1 else [method.value]
    assert back.LossyImageCompression == "01" and set(methods) == {"ISO_10918_1"}
    if ts == "auto":
        assert back.file_meta.TransferSyntaxUID == pydicom.uid.JPEGLSLossless
        assert back.PhotometricInterpretation == "RGB"
    else:
        [first, *_] = generate_frames(back.PixelData, number_of_frames=len(captures))
        assert parse_jpeg(first).sampling == ((2, 1), (1, 1), (1, 1))
        assert back.PhotometricInterpretation == "YBR_FULL_422" and len(methods) >= 2  # decoded, encoded again
    assert np.abs(back.pixel_array.astype(int) - np.stack([pixels_of("rgb8", i)[0] for i in range(len(captures))])
                  .reshape(back.pixel_array.shape)).mean() < 12


def test_lossy_output_gets_new_uid_per_object_and_ratio():
    capture = capture_of("rgb8")
    a = build_datasets([capture], STUDY, BuildOptions(transfer_syntax="j2k-lossy", j2k_ratio=5))[0]
    b = build_datasets([capture], STUDY, BuildOptions(transfer_syntax="j2k-lossy", j2k_ratio=5))[0]
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.LossyImageCompressionMethod == "ISO_15444_1"
    assert float(a.LossyImageCompressionRatio) > 2


def test_transcoded_jpeg_keeps_its_lossy_history():
    capture = capture_of("jpeg-rgb")
    [ds] = build_datasets([capture], STUDY, BuildOptions(transfer_syntax="jpeg-ls"))
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"


def test_frames_decoded_from_jpegs_make_one_lossy_step_for_the_object():
    from tests.support.dicomize_helpers import jpeg_bytes

    frames = [pixels_of("rgb8", seed)[0] for seed in range(3)]
    sizes = [len(jpeg_bytes(f, quality=q)) for f, q in zip(frames, (50, 70, 90))]
    captures = [Capture(SourceKind.VIDEO_FRAME, encoded=jpeg_bytes(f, quality=q), encoded_format=EncodedFormat.JPEG,
                        index=i) for i, (f, q) in enumerate(zip(frames, (50, 70, 90)))]
    [ds] = build_datasets(captures, STUDY, BuildOptions(transfer_syntax="jpeg-ls", multiframe=True))
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"  # one value, not one per frame
    assert float(ds.LossyImageCompressionRatio) == pytest.approx(sum(f.nbytes for f in frames) / sum(sizes), rel=0.01)


def test_jpeg_baseline_refuses_16_bit():
    with pytest.raises(EncodeError, match="8-bit"):
        build_datasets([capture_of("gray12")], STUDY, BuildOptions(transfer_syntax="jpeg"))


def test_film_window_and_bits():
    [ds] = build_datasets([capture_of("gray12", SourceKind.DIGITIZED_FILM)], STUDY)
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
    pixels, _ = pixels_of("gray12")
    assert float(ds.WindowWidth) == int(pixels.max()) - int(pixels.min()) + 1
    assert ds.ConversionType == "DF"
    assert [float(v) for v in ds.NominalScannedPixelSpacing] == pytest.approx([25.4 / 300] * 2)


@pytest.mark.parametrize("ts", ["explicit", "implicit"])
def test_encapsulated_pdf(tmp_path, dciodvfy, ts):
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"  # odd length on purpose
    capture = Capture(SourceKind.SCANNED_DOCUMENT, encoded=pdf, encoded_format=EncodedFormat.PDF, source="/x/report.pdf")
    [ds] = build_datasets([capture], STUDY, BuildOptions(transfer_syntax=ts))
    path = write_dataset(ds, tmp_path / "pdf.dcm")
    dciodvfy(path)
    back = pydicom.dcmread(path)
    assert back.Modality == "DOC"
    assert back.EncapsulatedDocument[:back.EncapsulatedDocumentLength] == pdf
    assert back.ConversionType == "SD"


def test_one_batch_one_study_series_per_family_and_instance_order():
    pdf = Capture(SourceKind.FILE_IMPORT, encoded=b"%PDF-1.4\n%%EOF\n", encoded_format=EncodedFormat.PDF)
    captures = [capture_of("gray8", index=i) for i in range(3)] + [pdf]
    datasets = build_datasets(captures, STUDY, BuildOptions(uid_root="1.2.3.4"))
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    images = [ds for ds in datasets if ds.Modality == "OT"]
    assert [ds.InstanceNumber for ds in images] == [1, 2, 3]
    assert len({ds.SeriesInstanceUID for ds in images}) == 1
    assert {ds.SeriesInstanceUID for ds in datasets if ds.Modality == "DOC"}.isdisjoint({images[0].SeriesInstanceUID})
    assert all(ds.SOPInstanceUID.startswith("1.2.3.4.") for ds in datasets)


def test_patient_age_from_birth_date_and_study_date():
    study = StudyContext.manual(patient_name="A^B", patient_id="1", birth_date="20000615", study_date="20240614")
    [ds] = build_datasets([capture_of("gray8")], study)
    assert ds.PatientAge == "023Y"


def test_write_leaves_no_partial_file(tmp_path):
    [ds] = build_datasets([capture_of("gray8")], STUDY)
    del ds.SOPClassUID  # makes writing fail half-way
    with pytest.raises(AttributeError):
        write_dataset(ds, tmp_path / "broken.dcm")
    assert list(tmp_path.iterdir()) == []


def test_mjpeg_frame_without_huffman_tables_is_decoded_not_passed_through():
    import struct

    from tests.support.dicomize_helpers import jpeg_bytes

    data = jpeg_bytes(pixels_of("rgb8")[0])
    stripped, pos = bytearray(data[:2]), 2
    while data[pos + 1] != 0xDA:  # drop DHT segments, as MJPEG cameras do
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if data[pos + 1] != 0xC4:
            stripped += data[pos:pos + 2 + length]
        pos += 2 + length
    stripped += data[pos:]
    capture = Capture(SourceKind.VIDEO_FRAME, encoded=bytes(stripped), encoded_format=EncodedFormat.JPEG)
    [ds] = build_datasets([capture], STUDY)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGLSLossless
    assert ds.LossyImageCompression == "01" and ds.PhotometricInterpretation == "RGB"


def test_multiframe_groups_runs_of_same_layout(dciodvfy, tmp_path):
    from tests.support.dicomize_helpers import jpeg_bytes

    progressive = [Capture(SourceKind.VIDEO_FRAME, encoded=jpeg_bytes(pixels_of("rgb8", i)[0], progressive=True),
                           encoded_format=EncodedFormat.JPEG, frame_rate=10.0) for i in range(3)]
    gray = [capture_of("gray8", seed=i) for i in range(2)]
    datasets = build_datasets(progressive + gray + [capture_of("rgb8")], STUDY, BuildOptions(multiframe=True))
    assert [int(ds.get("NumberOfFrames", 1)) for ds in datasets] == [3, 2, 1]
    assert datasets[0].SOPClassUID == pydicom.uid.MultiFrameTrueColorSecondaryCaptureImageStorage
    assert datasets[0].FrameTime == "100.0" and datasets[0].ConversionType == "DV"
    assert datasets[2].SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    for index, ds in enumerate(datasets):
        dciodvfy(write_dataset(ds, tmp_path / f"{index}.dcm"))
