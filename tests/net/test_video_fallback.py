"""A destination that does not take video gets the clip as Multi-frame True Color SC in JPEG Baseline
([video] fallback): DCMTK storescp refusing the video class or syntax, Orthanc without H.264 (C-STORE and
storage commitment through the outbox), STOW-RS refusals; a destination that takes video gets the file as
it is."""

from __future__ import annotations

import dataclasses
import threading
import tracemalloc
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from tests.support.netns import need_isolation
from tests.support.outbox_helpers import deliver, outbox_config, queue
from tests.support.peers import HOST, start_orthanc
from tests.support.stow_server import Behaviour, StowServer
from tests.support.video import make_video

from kiosk.config import LocalConfig, parse_config, parse_node_url
from kiosk.net.store import build_contexts, store_files
from kiosk.outbox import Outbox
from kiosk.outbox.destinations import StowDestination
from kiosk.outbox.journal import COMMITTED
from kiosk.video import fallback as video

LOCAL = LocalConfig()
ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
H264_HIGH_41 = "1.2.840.10008.1.2.4.102"
FRAMES = 25

# A storescp profile without the video SOP classes; the second one takes no Multi-frame True Color SC either.
NO_VIDEO_CFG = """\
[[TransferSyntaxes]]
[JpegOrUncompressed]
TransferSyntax1 = JPEGBaseline
TransferSyntax2 = LocalEndianExplicit
TransferSyntax3 = LittleEndianImplicit
[[PresentationContexts]]
[NoVideo]
PresentationContext1 = MultiframeTrueColorSecondaryCaptureImageStorage\\JpegOrUncompressed
PresentationContext2 = SecondaryCaptureImageStorage\\JpegOrUncompressed
[ScOnly]
PresentationContext1 = SecondaryCaptureImageStorage\\JpegOrUncompressed
[[Profiles]]
[NoVideo]
PresentationContexts = NoVideo
[ScOnly]
PresentationContexts = ScOnly
"""


def video_object(path: Path, stream: bytes, frames: int = FRAMES, fragment: int = 16384) -> Path:
    """A Video Endoscopic Image in H.264 High 4.1: the stream in fragments of ``fragment`` bytes."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = ENDOSCOPIC, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "TEST^VIDEO", "VID001", "", ""
    ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = \
        "20260101", "120000", "", "1", ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Laterality = "ES", 1, 1, ""
    ds.Manufacturer = "kiosk tests"
    ds.ContentDate, ds.ContentTime, ds.AcquisitionDateTime = "20260101", "120000", "20260101120000"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ""
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "41801008", "SCT", "Colon"
    ds.AnatomicRegionSequence = Sequence([region])
    ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_14496_10"
    ds.Rows, ds.Columns = 240, 320
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_PARTIAL_420", 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.NumberOfFrames, ds.FrameIncrementPointer, ds.FrameTime, ds.CineRate = frames, 0x00181063, 40.0, 25
    ds.StartTrim, ds.StopTrim, ds.RecommendedDisplayFrameRate = 1, frames, 25
    ds.FrameDelay, ds.ActualFrameDuration = 0.0, 40
    ds.AcquisitionContextSequence = Sequence([])
    ds.PixelData = encapsulate([stream[i:i + fragment] for i in range(0, len(stream), fragment)], has_bot=False)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = H264_HIGH_41
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def decoded(stream: bytes) -> list[np.ndarray]:
    import av

    with av.open(BytesIO(stream), format="h264") as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return make_video(tmp_path_factory.mktemp("clip"), "h264-raw", seconds=1.0).read_bytes()


@pytest.fixture
def clip_file(tmp_path, clip) -> Path:
    return video_object(tmp_path / "clip.dcm", clip)


@pytest.fixture
def no_video_cfg(tmp_path) -> Path:
    path = tmp_path / "novideo.cfg"
    path.write_text(NO_VIDEO_CFG)
    return path


def received(peer) -> list[Path]:  # noqa: ANN001 - tests.support.peers.Peer
    return sorted(p for p in peer.extra["received"].iterdir() if p.is_file())


def check_fallback(ds: Dataset, original: Path, stream: bytes, destination: str) -> None:
    """``ds`` is the Multi-frame True Color SC of ``original`` for ``destination``, its frames those of ``stream``."""
    source = pydicom.dcmread(original, stop_before_pixels=True)
    assert str(ds.SOPClassUID) == video.MF_TRUE_COLOR_SC
    assert (str(ds.SOPClassUID), str(ds.SOPInstanceUID)) == video.identity(str(source.SOPInstanceUID), destination)
    assert str(ds.file_meta.TransferSyntaxUID) == video.SYNTAX.uid
    assert int(ds.NumberOfFrames) == FRAMES
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID"):
        assert ds[keyword].value == source[keyword].value
    assert ds.PhotometricInterpretation == "YBR_FULL_422" and list(ds.ImageType)[0] == "DERIVED"
    assert ds.LossyImageCompression == "01"
    assert list(ds.LossyImageCompressionMethod) == ["ISO_14496_10", "ISO_10918_1"]
    assert len(ds.LossyImageCompressionRatio) == 2 and all(float(r) > 1 for r in ds.LossyImageCompressionRatio)
    [reference] = ds.SourceImageSequence
    assert (reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID) == (ENDOSCOPIC, source.SOPInstanceUID)
    assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121330"
    assert ds.DerivationCodeSequence[-1].CodeValue == "113040"
    frames = ds.pixel_array  # pydicom decodes the JPEGs (to RGB)
    want = decoded(stream)
    assert frames.shape == (FRAMES, 240, 320, 3) and len(want) == FRAMES
    for got, expected in zip(frames, want):
        assert np.abs(got.astype(int) - expected.astype(int)).mean() < 4  # one JPEG step from the decoded frame


def test_contexts_propose_the_fallback_for_video_only(clip_file, tmp_path):
    from tests.support.net_data import make_sc

    from kiosk.net.store import _read_instance

    clip_instance, still = _read_instance(clip_file), _read_instance(make_sc(tmp_path / "sc.dcm"))
    fallback_context = (video.MF_TRUE_COLOR_SC, [video.SYNTAX.uid])

    def keys(contexts):
        return [(str(c.abstract_syntax), [str(t) for t in c.transfer_syntax]) for c in contexts]

    assert fallback_context in keys(build_contexts([clip_instance], fallback=True))
    assert fallback_context not in keys(build_contexts([clip_instance]))
    assert fallback_context not in keys(build_contexts([still], fallback=True))


def test_a_peer_without_the_video_class_gets_the_fallback(storescp_factory, no_video_cfg, clip_file, clip, tmp_path,
                                                          dciodvfy):
    """Stills before and after it go as they are, on the association opened again after the frames were encoded."""
    from tests.support.net_data import make_sc

    from kiosk.net.store import KeptAssociation

    peer = storescp_factory(options=["-xf", str(no_video_cfg), "NoVideo"])
    node = parse_node_url(peer.url)
    work = tmp_path / "copies"
    stills = [make_sc(tmp_path / f"sc{n}.dcm", seed=n) for n in range(2)]
    keep = KeptAssociation()
    try:
        before, result, after = store_files(node, LOCAL, [stills[0], clip_file, stills[1]], fallback_dir=work,
                                            keep=keep).results
    finally:
        keep.close()
    assert (before.outcome, after.outcome, before.fallback, after.fallback) == ("success", "success", "", "")
    assert result.outcome == "success", result.message
    assert result.fallback == (f"sent as Multi-frame True Color SC (JPEG): {node.name} does not accept "
                               "Video Endoscopic Image Storage")
    arrived = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID): p for p in received(peer)}
    assert len(received(peer)) == 3
    check_fallback(pydicom.dcmread(arrived[video.MF_TRUE_COLOR_SC]), clip_file, clip, node.name)
    dciodvfy(arrived[video.MF_TRUE_COLOR_SC])
    assert list(work.iterdir()) == []  # made on disk in the folder given, and removed once sent


def test_a_peer_without_the_video_syntax_gets_the_fallback(storescp_factory, clip_file, clip, tmp_path):
    peer = storescp_factory(options=["+xy"])  # every storage class; uncompressed or JPEG Baseline only
    node = parse_node_url(peer.url)
    [result] = store_files(node, LOCAL, [clip_file], fallback_dir=tmp_path / "copies").results
    assert result.outcome == "success", result.message
    assert result.fallback.endswith(f"{node.name} does not accept Video Endoscopic Image Storage in "
                                    "MPEG-4 AVC/H.264 High Profile / Level 4.1")
    [arrived] = received(peer)
    check_fallback(pydicom.dcmread(arrived), clip_file, clip, node.name)


def test_a_peer_that_takes_video_gets_the_file_as_it_is(storescp_factory, clip_file, tmp_path):
    peer = storescp_factory(options=["+xa"])
    [result] = store_files(parse_node_url(peer.url), LOCAL, [clip_file], fallback_dir=tmp_path / "copies").results
    assert (result.outcome, result.fallback) == ("success", "")
    [arrived] = received(peer)
    got, sent = pydicom.dcmread(arrived), pydicom.dcmread(clip_file)
    assert (got.SOPClassUID, got.SOPInstanceUID) == (sent.SOPClassUID, sent.SOPInstanceUID)
    assert str(got.file_meta.TransferSyntaxUID) == H264_HIGH_41
    assert got.PixelData == sent.PixelData


def test_without_fallback_the_clip_fails_saying_why(storescp_factory, no_video_cfg, clip_file, tmp_path):
    from tests.support.net_data import make_sc

    peer = storescp_factory(options=["-xf", str(no_video_cfg), "NoVideo"])
    node = parse_node_url(peer.url)
    result, still = store_files(node, LOCAL, [clip_file, make_sc(tmp_path / "sc.dcm")]).results
    assert result.outcome == "failed"
    assert result.message == (f"{node.name} does not accept Video Endoscopic Image Storage; [video] fallback = true "
                               "would send it as Multi-frame True Color SC (JPEG), or send it to a destination that "
                               "takes video")
    assert still.outcome == "success" and len(received(peer)) == 1


def test_a_peer_taking_neither_fails_the_clip_and_takes_the_rest(storescp_factory, no_video_cfg, clip_file, tmp_path):
    from tests.support.net_data import make_sc

    peer = storescp_factory(options=["-xf", str(no_video_cfg), "ScOnly"])
    node = parse_node_url(peer.url)
    clip_result, still = store_files(node, LOCAL, [clip_file, make_sc(tmp_path / "sc.dcm")],
                                     fallback_dir=tmp_path / "copies").results
    assert clip_result.outcome == "failed"
    assert clip_result.message == (f"{node.name} does not accept Video Endoscopic Image Storage, nor Multi-frame True "
                                   "Color SC (JPEG) (its fallback): send it to a destination that takes either")
    assert still.outcome == "success"
    assert len(received(peer)) == 1


def test_a_broken_stream_fails_with_its_reason(storescp_factory, no_video_cfg, clip, tmp_path):
    peer = storescp_factory(options=["-xf", str(no_video_cfg), "NoVideo"])
    node = parse_node_url(peer.url)
    short = video_object(tmp_path / "short.dcm", clip[:len(clip) // 2])  # half the stream, the header says 25 frames
    [result] = store_files(node, LOCAL, [short], fallback_dir=tmp_path / "copies").results
    assert result.outcome == "failed"
    assert result.message.startswith(f"{node.name} does not accept Video Endoscopic Image Storage, and its "
                                     "Multi-frame True Color SC (JPEG) cannot be made: its video stream holds ")
    assert result.message.endswith(" frames, its header says 25")
    assert received(peer) == []
    assert list((tmp_path / "copies").iterdir()) == []


def test_a_long_clip_is_never_held_decoded(tmp_path):
    """250 frames of 320x240: 58 MB decoded; the fallback is made with a few MB of Python memory."""
    stream = make_video(tmp_path, "h264-raw", seconds=10, name="long.h264").read_bytes()
    original = video_object(tmp_path / "long.dcm", stream, frames=250, fragment=1 << 20)
    tracemalloc.start()
    try:
        with open(original, "rb") as source, video.fallback_file(source, tmp_path / "copies", "pacs") as made:
            _, peak = tracemalloc.get_traced_memory()
            assert made.path.parent.parent == tmp_path / "copies"
            assert made.frames == 250
            ds = pydicom.dcmread(made.path, stop_before_pixels=True)
            assert int(ds.NumberOfFrames) == 250
    finally:
        tracemalloc.stop()
    print(f"peak {peak / 1e6:.1f} MB of Python memory")
    assert peak < 12e6, f"peak {peak / 1e6:.1f} MB of Python memory"
    assert list((tmp_path / "copies").iterdir()) == []


def test_cancel_stops_making_the_fallback(clip_file, tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(video.Cancelled), open(clip_file, "rb") as source, \
            video.fallback_file(source, tmp_path / "copies", "pacs", cancel):
        pass
    assert list((tmp_path / "copies").iterdir()) == []


@pytest.fixture
def orthanc_without_h264(tmp_path):
    """Orthanc taking uncompressed and JPEG Baseline only (no video syntax), with storage commitment."""
    need_isolation()
    peer = start_orthanc(tmp_path / "orthanc", settings={"AcceptedTransferSyntaxes": [
        "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"]})
    yield peer
    peer.stop()


def test_outbox_sends_the_fallback_to_orthanc_and_commits_it(orthanc_without_h264, clip_file, clip, tmp_path, capsys):
    import argparse

    from kiosk.cli.outbox import run_list

    peer = orthanc_without_h264
    base = outbox_config(tmp_path, {"pacs": {"ae_title": peer.aet, "host": HOST, "port": peer.port}})
    config = dataclasses.replace(base, local=dataclasses.replace(base.local, port=peer.extra["kiosk_port"]))
    outbox = Outbox.from_config(config)
    try:
        [job_id] = queue(outbox, config, [clip_file], "pacs", commit=True)
        deliver(outbox, config, [job_id], timeout=60)
        job = outbox.job(job_id)
    finally:
        outbox.close()
    note = ("sent as Multi-frame True Color SC (JPEG): pacs does not accept Video Endoscopic Image Storage in "
            "MPEG-4 AVC/H.264 High Profile / Level 4.1")
    assert (job.state, job.fallback, job.reason) == (COMMITTED, note, note)
    source = pydicom.dcmread(clip_file, stop_before_pixels=True)
    [instance] = peer.instances()
    stored = pydicom.dcmread(BytesIO(peer.rest_bytes(f"/instances/{instance}/file")))
    check_fallback(stored, clip_file, clip, "pacs")
    assert str(stored.SOPInstanceUID) != str(source.SOPInstanceUID)
    assert run_list(argparse.Namespace(state=None, destination=None, json=False), config) == 0
    assert note in capsys.readouterr().out


def stow_config(tmp_path: Path, url: str, fallback: bool = True):
    return parse_config({"local": {"ae_title": "KIOSK"}, "destinations": {"web": {"stow_url": url}},
                         "outbox": {"spool_dir": str(tmp_path / "spool")}, "video": {"fallback": fallback}})


def _item(path: Path):
    from kiosk.outbox.destinations import Item

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return Item(path, str(ds.SOPClassUID), str(ds.SOPInstanceUID), path.stat().st_size,
                str(ds.file_meta.TransferSyntaxUID))


def _send_to_web(config, path: Path):
    """``path`` sent to the STOW-RS destination ``web`` of ``config``: its outcome."""
    destination = StowDestination("web", config.destinations["web"], config)
    try:
        [outcome] = destination.send([_item(path)], lambda done, sent: None, threading.Event())
    finally:
        destination.close()
    return outcome


@pytest.mark.parametrize("refusal", [Behaviour(status=415), "0122", "C122"])
def test_stow_refusing_the_clip_gets_the_fallback(refusal, clip_file, clip, tmp_path):
    uid = str(pydicom.dcmread(clip_file, stop_before_pixels=True).SOPInstanceUID)
    first = refusal if isinstance(refusal, Behaviour) else Behaviour(failures={uid: int(refusal, 16)})
    with StowServer(script=[first]) as server:
        config = stow_config(tmp_path, server.url)
        outcome = _send_to_web(config, clip_file)
    assert outcome.outcome == "success", outcome.message
    assert outcome.fallback.startswith("sent as Multi-frame True Color SC (JPEG): web does not accept Video "
                                       "Endoscopic Image Storage")
    assert [request.uids for request in server.requests] == [[uid], [video.identity(uid, "web")[1]]]
    check_fallback(pydicom.dcmread(BytesIO(server.requests[1].parts[0])), clip_file, clip, "web")
    assert list((tmp_path / "spool" / "copies").iterdir()) == []


def test_stow_refusal_without_fallback_says_how_to_send_it(clip_file, tmp_path):
    uid = str(pydicom.dcmread(clip_file, stop_before_pixels=True).SOPInstanceUID)
    with StowServer(script=[Behaviour(failures={uid: 0x0122})]) as server:
        config = stow_config(tmp_path, server.url, fallback=False)
        outcome = _send_to_web(config, clip_file)
    assert outcome.outcome == "failed"
    assert outcome.message.endswith("; [video] fallback = true would send it as Multi-frame True Color SC (JPEG)")
    assert len(server.requests) == 1


def test_stow_to_orthanc_keeps_the_clip_as_it_is(orthanc_web, clip_file, tmp_path):
    from tests.net.test_net_stow import web_config

    orthanc_web.clear()
    config = web_config(tmp_path, orthanc_web.dicomweb_url)
    outcome = _send_to_web(config, clip_file)
    assert (outcome.outcome, outcome.fallback) == ("success", "")
    [instance] = orthanc_web.instances()
    stored = pydicom.dcmread(BytesIO(orthanc_web.rest_bytes(f"/instances/{instance}/file")))
    sent = pydicom.dcmread(clip_file)
    assert (stored.SOPClassUID, stored.SOPInstanceUID) == (sent.SOPClassUID, sent.SOPInstanceUID)
    assert stored.PixelData == sent.PixelData
