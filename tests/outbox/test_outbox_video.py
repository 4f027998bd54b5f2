"""Video objects through the station and the outbox: streamed into the spool (never encoded in memory),
checked whole on disk, delivered byte for byte; every object of a split clip handed over in order."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil

import pydicom
import pytest
from pydicom.encaps import generate_fragments

from kiosk.cli.outbox import PREPARING
from kiosk.config import to_toml
from kiosk.dicomize import BuildOptions, build_datasets
from kiosk.errors import KioskError
from kiosk.media.profiles import PROFILES
from kiosk.outbox import core
from kiosk.outbox.destinations import parse_destination
from kiosk.outbox.export import export_jobs
from kiosk.outbox.journal import JournalLostError
from kiosk.outbox.recovery import recover_journal
from kiosk.outbox.spool import SpoolError
from kiosk.session import SessionStore
from kiosk.station import FolderOutput, OutboxOutput, Station
from kiosk.study import StudyContext
from kiosk.video.elementary import write_elementary
from tests.support.outbox_helpers import cli, deliver
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


@pytest.fixture
def own_clip(tmp_path, clip):
    """A copy of the clip, as a recording leaves it: the kiosk's own file."""
    own = tmp_path / "recorded.mp4"
    shutil.copyfile(clip, own)
    return own


def _links(outbox):
    return list(outbox.spool.files.glob("*.source"))


def _queue_linked(outbox, clip, tmp):
    """The clip's Video Endoscopic object queued for a folder with its clip linked: (dataset, job id)."""
    [ds] = build_datasets([clip_of(clip)], STUDY, BuildOptions(modality="ES"))
    [job_id] = outbox.accept_dataset(ds, {"usb": {"kind": "folder", "path": str(tmp / "usb")}}, link=True)["usb"]
    return ds, job_id


def test_a_sessions_clip_is_linked_into_the_outbox_and_written_out_before_it_is_sent(setup, clip, own_clip,
                                                                                      storescp_factory):
    config, outbox, tmp = setup
    pacs = storescp_factory(options=["+xa"])
    name, spec = parse_destination(config, pacs.url)
    station = Station.start(SessionStore(tmp / "sessions"), STUDY, BuildOptions(modality="ES"))
    station.add_clip(clip_of(own_clip))
    kept = station.session.items[0].capture.encoded_path
    inode = kept.stat().st_ino
    folder = FolderOutput(tmp / "out")
    (tmp / "out").mkdir()
    station.send([folder, OutboxOutput(outbox, {name: spec}, link_clips=True)])
    assert not kept.exists()  # the session has ended: its copy is gone, the outbox's link holds the clip
    [job] = outbox.journal.jobs()
    assert job.preparing and not outbox.spool.path(job.spool_name).exists()
    [link] = _links(outbox)
    assert link.stat().st_ino == inode  # not a copy
    deliver(outbox, config, [job.id])
    done = outbox.journal.get(job.id)
    assert done.state == "sent" and not done.preparing and not _links(outbox)
    spooled = outbox.spool.path(job.spool_name).read_bytes()
    # Written out exactly as a copy made at once would have been.
    assert spooled == folder.files[0].read_bytes()
    assert (hashlib.sha256(spooled).hexdigest(), len(spooled)) == (done.sha256, done.size) and done.size == job.size
    record = outbox.spool.record(job.spool_name)
    assert "prepare" not in record and (record["sha256"], record["size"]) == (done.sha256, done.size)
    [delivered] = list(pacs.extra["received"].iterdir())
    expected = io.BytesIO()
    write_elementary(clip, expected)
    assert list(generate_fragments(pydicom.dcmread(delivered).PixelData))[1].removesuffix(b"\0") == expected.getvalue()


def test_a_linked_clip_changed_before_it_is_written_out_fails_its_job_saying_so(setup, own_clip):
    config, outbox, tmp = setup
    ds, job_id = _queue_linked(outbox, own_clip, tmp)
    with open(own_clip, "r+b") as changing:  # same size, other bytes
        changing.seek(4000)
        changing.write(b"\xff" * 64)
    deliver(outbox, config, [job_id])
    job = outbox.journal.get(job_id)
    assert job.state == "failed" and job.preparing
    assert f"video object {ds.SOPInstanceUID}: its clip changed after it was queued" in job.reason
    assert "capture or import it again" in job.reason
    assert not outbox.spool.path(job.spool_name).exists() and not list(outbox.spool.tmp.iterdir())
    outbox.remove([job_id], force=True)
    assert list(outbox.spool.files.iterdir()) == []


def test_writing_out_cut_short_by_a_crash_starts_again_and_a_lost_journal_is_rebuilt(setup, own_clip, monkeypatch):
    config, outbox, tmp = setup
    ds, job_id = _queue_linked(outbox, own_clip, tmp)
    job = outbox.journal.get(job_id)
    replace = os.replace

    def crash_before_the_record(source, target):
        if str(target).endswith(".json"):
            raise OSError(errno.EIO, "Input/output error")
        replace(source, target)

    monkeypatch.setattr(os, "replace", crash_before_the_record)
    with pytest.raises(SpoolError, match="cannot write to the outbox"):
        outbox.prepare(job)
    monkeypatch.undo()
    # The file is in place, but its record still says "prepare": nothing is taken for done.
    assert outbox.spool.path(job.spool_name).exists() and "prepare" in outbox.spool.record(job.spool_name)
    assert outbox.journal.get(job_id).preparing and len(_links(outbox)) == 1
    outbox.close()
    (tmp / "spool" / core.JOURNAL_NAME).unlink()
    with pytest.raises(JournalLostError):
        core.Outbox.from_config(config)
    result = recover_journal(core.OutboxSettings.from_config(config))
    assert result.files == 1 and not result.unusable
    again = core.Outbox.from_config(config)
    try:
        [rebuilt] = again.journal.jobs()
        spooled = again.spool.path(rebuilt.spool_name).read_bytes()
        assert not rebuilt.preparing and hashlib.sha256(spooled).hexdigest() == rebuilt.sha256
        assert rebuilt.sop_instance_uid == ds.SOPInstanceUID and not _links(again)
    finally:
        again.close()


def test_a_spool_on_another_disk_gets_a_copy(setup, own_clip, monkeypatch):
    _config, outbox, tmp = setup

    def other_disk(*_args):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", other_disk)
    _ds, job_id = _queue_linked(outbox, own_clip, tmp)
    job = outbox.journal.get(job_id)
    assert not job.preparing and outbox.spool.path(job.spool_name).stat().st_size == job.size
    assert not _links(outbox) and len(list(outbox.spool.files.glob("*.json"))) == 1


def test_a_linked_clip_is_written_out_for_a_disc_and_kept_by_the_spools_recovery(setup, own_clip):
    _config, outbox, tmp = setup
    _ds, job_id = _queue_linked(outbox, own_clip, tmp)
    assert outbox.spool.recover(set(), min_age=0) == (0, 1)  # not in that journal: counted, never deleted
    assert len(_links(outbox)) == 1 and outbox.spool.record(outbox.journal.get(job_id).spool_name)
    disc = tmp / "disc"
    disc.mkdir()
    result = export_jobs(outbox, [job_id], disc, PROFILES["STD-GEN-CD"])
    job = outbox.journal.get(job_id)
    assert not job.preparing and not _links(outbox)
    assert not any("cannot be read" in why for _path, why in result.failed)


def test_outbox_list_and_show_say_a_linked_clip_is_written_out_before_it_is_sent(setup, own_clip):
    config, outbox, tmp = setup
    ds, job_id = _queue_linked(outbox, own_clip, tmp)
    config_file = tmp / "kiosk.toml"
    config_file.write_text(to_toml(config))
    kiosk = cli(config_file)
    line = next(line for line in kiosk("outbox", "list").stdout.splitlines() if ds.SOPInstanceUID in line)
    assert line.split()[:2] == [str(job_id), "queued"] and line.endswith(PREPARING)
    shown = kiosk("outbox", "show", str(job_id)).stdout
    assert f"bytes) - {PREPARING}" in shown
