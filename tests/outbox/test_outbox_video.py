"""Video objects through the station and the outbox: streamed into the spool (never encoded in memory),
checked whole on disk, delivered byte for byte; every object of a split clip handed over in order."""

from __future__ import annotations

import hashlib
import io

import pydicom
import pytest
from pydicom.encaps import generate_fragments

from kiosk.dicomize import BuildOptions, build_datasets
from kiosk.errors import KioskError
from kiosk.outbox import core
from kiosk.outbox.destinations import parse_destination
from kiosk.station import FolderOutput, OutboxOutput, Station
from kiosk.study import StudyContext
from kiosk.video.elementary import write_elementary
from tests.support.outbox_helpers import deliver
from tests.support.video import FRAMES, clip_of, make_video

pytest.importorskip("av", reason="PyAV is not installed (pip install kiosk[video])")

STUDY = StudyContext.manual(patient_name="DOE^JANE", patient_id="PID1", birth_date="19800101", sex="F")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clips"), "h264-mp4")


def test_a_video_object_is_streamed_into_the_spool_and_delivered_intact(setup, clip, monkeypatch, storescp_factory):
    config, outbox, tmp = setup
    monkeypatch.setattr(core, "encode", lambda *a, **k: pytest.fail("the object was encoded in memory"))
    [ds] = build_datasets([clip_of(clip)], STUDY, BuildOptions(modality="ES"))
    pacs = storescp_factory(options=["+xa"])  # every transfer syntax
    name, spec = parse_destination(config, pacs.url)
    jobs = outbox.accept_dataset(ds, {name: spec})
    job = outbox.journal.get(jobs[name][0])
    spooled = outbox.spool.path(job.spool_name).read_bytes()
    assert (job.sha256, job.size) == (hashlib.sha256(spooled).hexdigest(), len(spooled))
    record = outbox.spool.record(job.spool_name)
    assert (record["sha256"], record["size"]) == (job.sha256, job.size)
    assert (job.sop_instance_uid, job.transfer_syntax) == (ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID)
    deliver(outbox, config, jobs[name])
    assert outbox.journal.get(job.id).state == "sent"
    [delivered] = list(pacs.extra["received"].iterdir())
    back = pydicom.dcmread(delivered)
    expected = io.BytesIO()
    write_elementary(clip, expected)
    stream = list(generate_fragments(back.PixelData))[1]
    assert stream.removesuffix(b"\0") == expected.getvalue() and back.NumberOfFrames == FRAMES


def test_a_clip_changed_before_it_is_queued_leaves_nothing_in_the_spool(setup, clip):
    _config, outbox, tmp = setup
    changing = tmp / "clip.mp4"
    changing.write_bytes(clip.read_bytes())
    [ds] = build_datasets([clip_of(changing)], STUDY, BuildOptions(modality="ES"))
    changing.write_bytes(clip.read_bytes()[:-5000])  # the last frames gone
    with pytest.raises(KioskError, match="clip.mp4: "):
        outbox.accept_dataset(ds, {"usb": {"kind": "folder", "path": "/nowhere"}})
    assert list(outbox.spool.files.iterdir()) == list(outbox.spool.tmp.iterdir()) == []
    assert outbox.summary() == {}


def test_a_streaming_station_hands_over_every_part_of_a_clip_to_every_output(setup, clip):
    _config, outbox, tmp = setup
    limit = 64 * 1024 + clip.stat().st_size // 3
    folder = FolderOutput(tmp / "out")
    (tmp / "out").mkdir()
    queued = OutboxOutput(outbox, {"usb": {"kind": "folder", "path": str(tmp / "usb")}})
    station = Station.stream(STUDY, BuildOptions(modality="ES", max_object_bytes=limit), [folder, queued])
    station.add_pages([clip_of(clip)])
    written = [pydicom.dcmread(path) for path in folder.files]
    assert len(written) == station.objects >= 3 and len(station.jobs["usb"]) == len(written)
    assert [ds.InstanceNumber for ds in written] == list(range(1, len(written) + 1))
    assert sum(ds.NumberOfFrames for ds in written) == FRAMES
    for path, job_id in zip(folder.files, station.jobs["usb"]):
        spooled = outbox.spool.path(outbox.journal.get(job_id).spool_name).read_bytes()
        assert spooled == path.read_bytes()
