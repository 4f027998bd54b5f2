"""Stills from an MJPEG stream keep the stream's JPEG: the stored Pixel Data is the frame's bytes
(with the standard Huffman tables put in when the frame has none, as UVC cameras send them)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("cv2", reason="OpenCV is not installed (pip install kiosk[video])")
av = pytest.importorskip("av", reason="PyAV is not installed (pip install kiosk[video])")

from pydicom.encaps import generate_frames  # noqa: E402

from drivers.registry import open_device  # noqa: E402
from kiosk.dicomize import BuildOptions, build_datasets, write_dataset  # noqa: E402
from kiosk.jpeg import parse_jpeg, with_huffman_tables  # noqa: E402
from kiosk.study import StudyContext  # noqa: E402
from kiosk.transfer_syntaxes import JPEG_BASELINE  # noqa: E402
from tests.support.peers import free_port  # noqa: E402
from tests.support.sources import Stream  # noqa: E402
from tests.support.video import make_video  # noqa: E402


def _strip_tables(src: Path, dst: Path) -> Path:
    """``src`` with the DHT segments cut out of every frame (a UVC camera's MJPEG)."""
    with av.open(str(src)) as source, av.open(str(dst), "w", format="matroska") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.size == 0:
                continue
            data = bytes(packet)
            sos = data.index(b"\xff\xda")
            head, pos = bytearray(), 2
            while pos < sos:
                length = int.from_bytes(data[pos + 2:pos + 4], "big")
                if data[pos + 1] != 0xC4:
                    head += data[pos:pos + 2 + length]
                pos += 2 + length
            stripped = av.Packet(data[:2] + bytes(head) + data[sos:])
            stripped.pts, stripped.dts, stripped.time_base = packet.pts, packet.dts, packet.time_base
            stripped.is_keyframe, stripped.stream = True, stream
            out.mux(stripped)
    return dst


def _frames(path: Path) -> set[bytes]:
    with av.open(str(path)) as container:
        return {bytes(p) for p in container.demux(container.streams.video[0]) if p.size}


@pytest.mark.parametrize("tables", ["in every frame", "left out"])
def test_a_still_from_an_mjpeg_stream_is_stored_byte_for_byte(tmp_path, dciodvfy, tables):
    clip = make_video(tmp_path, "mjpeg-k3", rate=30, name="src.mkv")  # the T.81 K.3 tables, as cameras use
    if tables == "left out":
        clip = _strip_tables(clip, tmp_path / "no-dht.mkv")
    sent = _frames(clip)
    assert all(parse_jpeg(f).huffman_tables == (tables == "in every frame") for f in sent)
    stream = Stream(free_port(), clip).start()
    try:
        with open_device(f"video:{stream.url}") as device:
            stills = device.snapshots(2)
    finally:
        stream.kill()
    expected = {with_huffman_tables(f) for f in sent}  # the same bytes when the tables are there
    study = StudyContext.manual(patient_name="DOE^JANE", patient_id="PID1")
    for still in stills:
        assert still.encoded in expected and still.pixels.shape == (240, 320, 3)
        [ds] = build_datasets([still], study, BuildOptions())
        assert ds.file_meta.TransferSyntaxUID == JPEG_BASELINE.uid
        [stored] = list(generate_frames(ds.PixelData, number_of_frames=1))
        assert stored.rstrip(b"\0") == still.encoded.rstrip(b"\0")  # fragments are padded to even length
        assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_10918_1"
        assert ds.PhotometricInterpretation == "YBR_FULL_422"
        dciodvfy(write_dataset(ds, tmp_path / f"still-{still.metadata['seq']}.dcm"))
