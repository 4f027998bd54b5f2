"""Outbox parts without network peers: spool, journal, recovery, housekeeping, events, folder destination."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest
from tests.support.outbox_data import make_instances, received_uids
from tests.support.outbox_helpers import deliver, outbox_config, queue

from kiosk.errors import UsageError
from kiosk.outbox import Outbox, OutboxFullError
from kiosk.outbox.events import EventBus, JobsAdded, Progress, StateChanged
from kiosk.outbox.housekeeping import delete_expired
from kiosk.outbox.journal import Journal, Update


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_accepted_files_are_complete_private_copies(setup):
    config, outbox, tmp = setup
    made = make_instances(tmp / "in", 3)
    jobs = queue(outbox, config, list(made.values()), "folder:" + str(tmp / "usb"))
    assert len(jobs) == 3
    spool = tmp / "spool"
    assert mode(spool) == mode(spool / "files") == mode(spool / "tmp") == 0o700
    assert mode(spool / "journal.sqlite") == mode(spool / "journal.sqlite-wal") == 0o600
    for job in outbox.journal.jobs_by_id(jobs):
        path = outbox.spool.path(job.spool_name)
        assert mode(path) == 0o600
        assert path.read_bytes() == made[job.sop_instance_uid].read_bytes()
        assert job.state == "queued"
    assert list((spool / "tmp").iterdir()) == []


def test_half_written_files_are_cleaned_and_unreferenced_ones_kept_never_sent(setup):
    config, outbox, tmp = setup
    made = make_instances(tmp / "in", 2)
    (tmp / "usb").mkdir()
    jobs = queue(outbox, config, list(made.values()), "folder:" + str(tmp / "usb"))
    # What a crash leaves: a half-written temp file and a complete file never journaled.
    part = tmp / "spool" / "tmp" / "dead.part"
    part.write_bytes(made[next(iter(made))].read_bytes()[:100])
    orphan = tmp / "spool" / "files" / "orphan.dcm"
    orphan.write_bytes(make_instances(tmp / "other", 1, patient_id="OTHER").popitem()[1].read_bytes())
    old = time.time() - 3600
    for path in (part, orphan):
        os.utime(path, (old, old))
    deliver(outbox, config, jobs)
    assert sorted(received_uids(tmp / "usb")) == sorted(made)
    # The journal does not know the orphan: it may be an accepted image whose journal was lost.
    assert not part.exists() and orphan.exists()


@pytest.mark.parametrize("damage", ["truncate", "change", "delete"])
def test_damaged_or_missing_spool_file_fails_its_job_with_the_reason(setup, damage):
    config, outbox, tmp = setup
    made = make_instances(tmp / "in", 2)
    (tmp / "usb").mkdir()
    jobs = queue(outbox, config, list(made.values()), "folder:" + str(tmp / "usb"))
    victim = outbox.journal.get(jobs[0])
    path = outbox.spool.path(victim.spool_name)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:-10])
    elif damage == "change":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    else:
        path.unlink()
    deliver(outbox, config, jobs)
    failed, sent = outbox.journal.jobs_by_id(jobs)
    assert failed.state == "failed"
    assert ("is missing" if damage == "delete" else "changed after it was accepted") in failed.reason
    assert "capture or import it again" in failed.reason
    assert sent.state == "sent"
    assert received_uids(tmp / "usb") == [sent.sop_instance_uid]


def test_jobs_left_sending_by_a_dead_process_are_queued_again(setup):
    config, outbox, tmp = setup
    jobs = queue(outbox, config, list(make_instances(tmp / "in", 4).values()), "folder:" + str(tmp / "usb"))
    claimed = outbox.claim("folder:" + str(tmp / "usb"), 3)
    assert [j.state for j in outbox.journal.jobs_by_id(jobs)] == ["sending"] * 3 + ["queued"]
    assert len(claimed) == 3
    other = Journal(tmp / "spool" / "journal.sqlite")  # as a restarted process would
    assert other.recover() == 3
    assert [j.state for j in other.jobs_by_id(jobs)] == ["queued"] * 4
    other.close()


def test_claim_takes_due_jobs_lowest_first_whatever_their_history(setup):
    config, outbox, tmp = setup
    to = "folder:" + str(tmp / "usb")
    jobs = queue(outbox, config, list(make_instances(tmp / "in", 6).values()), to)
    name = outbox.journal.jobs_by_id(jobs)[0].destination
    now = time.time()
    outbox.apply([Update(jobs[0], "sent"), Update(jobs[1], "retrying", next_attempt=now - 1),
                  Update(jobs[2], "retrying", next_attempt=now + 3600)])
    # A retrying job claimed by a worker that then died keeps its time when recovery queues it again.
    outbox.apply([Update(jobs[3], "retrying", next_attempt=now - 1)])
    assert [j.id for j in outbox.claim(name, 1)] == [jobs[1]]
    outbox.journal.recover()
    assert [j.id for j in outbox.claim(name, 1)] == [jobs[1]]
    outbox.journal.recover()
    assert outbox.journal.get(jobs[1]).next_attempt is not None and outbox.journal.get(jobs[1]).state == "queued"
    assert [j.id for j in outbox.claim(name, 10)] == [jobs[1], jobs[3], jobs[4], jobs[5]]
    assert outbox.claim(name, 10) == []


def test_free_disk_threshold_refuses_new_images_and_keeps_accepted_ones(tmp_path):
    config = outbox_config(tmp_path)
    outbox = Outbox.from_config(config)
    made = make_instances(tmp_path / "in", 2)
    first = queue(outbox, config, [made.popitem()[1]], "folder:" + str(tmp_path / "usb"))
    outbox.close()
    huge = outbox_config(tmp_path, min_free_mb=10 ** 9)
    full = Outbox.from_config(huge)
    with pytest.raises(OutboxFullError, match="outbox disk is full") as info:
        queue(full, huge, [made.popitem()[1]], "folder:" + str(tmp_path / "usb"))
    assert "refused" in info.value.message and info.value.hint
    with pytest.raises(OutboxFullError):
        full.check_capacity()
    assert [j.id for j in full.journal.jobs()] == first
    assert len(list((tmp_path / "spool" / "files").glob("*.dcm"))) == 1
    full.close()


def test_housekeeping_deletes_only_delivered_files_after_retention(setup):
    config, outbox, tmp = setup
    made = list(make_instances(tmp / "in", 4).values())
    jobs = queue(outbox, config, made, "folder:" + str(tmp / "usb"))
    outbox.apply([Update(jobs[0], "sent"), Update(jobs[1], "failed", reason="x"),
                  Update(jobs[2], "retrying", next_attempt=time.time() + 99)])
    paths = {j.id: outbox.spool.path(j.spool_name) for j in outbox.journal.jobs_by_id(jobs)}
    assert delete_expired(outbox.journal, outbox.spool, retention_hours=1) == 0  # too recent
    assert delete_expired(outbox.journal, outbox.spool, retention_hours=1, now=time.time() + 7200) == 1
    assert not paths[jobs[0]].exists()
    assert all(paths[j].exists() for j in jobs[1:])
    assert [j.id for j in outbox.journal.jobs()] == jobs[1:]  # the delivered job left the journal with its file


def test_retry_and_remove_rules(setup):
    config, outbox, tmp = setup
    jobs = queue(outbox, config, list(make_instances(tmp / "in", 2).values()), "folder:" + str(tmp / "usb"))
    with pytest.raises(UsageError, match="--force"):
        outbox.remove([jobs[0]])
    outbox.apply([Update(jobs[0], "failed", 0xA900, "bad")])
    path = outbox.spool.path(outbox.journal.get(jobs[0]).spool_name)
    assert outbox.retry_failed() == 1
    job = outbox.journal.get(jobs[0])
    assert (job.state, job.attempts) == ("queued", 0)
    assert outbox.remove([jobs[0]], force=True) == 1
    assert not path.exists()
    with pytest.raises(UsageError, match="no job"):
        outbox.job(jobs[0])
    assert outbox.summary() == {"folder:" + str(tmp / "usb"): {
        "queued": 1, "sending": 0, "sent": 0, "committed": 0, "retrying": 0, "failed": 0}}


def test_backoff_doubles_up_to_the_maximum(tmp_path):
    settings = Outbox.from_config(outbox_config(tmp_path, retry_interval=2, retry_max_interval=10)).settings
    assert [settings.backoff(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]


def test_events_reach_subscribers_from_many_threads():
    bus = EventBus()
    seen: list = []
    lock = threading.Lock()

    def record(event) -> None:
        with lock:
            seen.append(event)

    def broken(event) -> None:
        raise RuntimeError("a subscriber bug")

    unsubscribe = bus.subscribe(record)
    bus.subscribe(broken)
    threads = [threading.Thread(target=lambda i=i: [bus.publish(JobsAdded("d", (i, n))) for n in range(200)])
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 1600
    unsubscribe()
    bus.publish(JobsAdded("d", (0,)))
    assert len(seen) == 1600


def test_folder_destination_writes_a_dicomdir_and_reports_events(setup):
    from pydicom.fileset import FileSet

    config, outbox, tmp = setup
    usb = tmp / "usb"
    usb.mkdir()
    made = make_instances(tmp / "in", 3)
    events: list = []
    outbox.events.subscribe(events.append)
    jobs = queue(outbox, config, list(made.values()), f"folder:{usb}")
    deliver(outbox, config, jobs)
    more = make_instances(tmp / "in2", 2, patient_id="OUTBOX2")
    jobs2 = queue(outbox, config, list(more.values()), f"folder:{usb}")
    deliver(outbox, config, jobs2)
    outbox.retry([jobs[0]])  # the same instance again: kept once in the File-set
    deliver(outbox, config, [jobs[0]])
    fileset = FileSet(usb / "DICOMDIR")
    assert sorted(i.SOPInstanceUID for i in fileset) == sorted([*made, *more])
    assert sorted(received_uids(usb)) == sorted([*made, *more])
    assert any(isinstance(e, Progress) and e.instances_done == 3 and e.bytes_done == e.bytes_total for e in events)
    assert {(e.old, e.new) for e in events if isinstance(e, StateChanged)} >= {("queued", "sending"), ("sending", "sent")}


def test_folder_missing_is_retried_until_it_appears(setup):
    config, outbox, tmp = setup
    usb = tmp / "usb"
    made = make_instances(tmp / "in", 2)
    jobs = queue(outbox, config, list(made.values()), f"folder:{usb}")
    threading.Timer(0.5, usb.mkdir).start()
    deliver(outbox, config, jobs)
    assert [j.state for j in outbox.journal.jobs_by_id(jobs)] == ["sent", "sent"]
    assert sorted(received_uids(usb)) == sorted(made)


def test_instance_not_fit_for_a_dicomdir_fails_visibly(setup):
    config, outbox, tmp = setup
    (tmp / "usb").mkdir()
    path = make_instances(tmp / "in", 1).popitem()[1]
    from pydicom import dcmread

    ds = dcmread(path)
    del ds.StudyDate
    ds.save_as(path)
    jobs = queue(outbox, config, [path], f"folder:{tmp / 'usb'}")
    deliver(outbox, config, jobs)
    job = outbox.journal.get(jobs[0])
    assert job.state == "failed" and "Study Date" in job.reason


def test_accept_dataset_spools_the_object_with_the_kiosks_file_meta(setup):
    """The touch UI queues datasets: their files carry the kiosk's identity, as `kiosk convert`'s do."""
    from pydicom import dcmread

    from kiosk import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

    config, outbox, tmp = setup
    ds = dcmread(make_instances(tmp / "in", 1).popitem()[1])
    jobs = outbox.accept_dataset(ds, {"usb": {"kind": "folder", "path": str(tmp / "usb")}}, ["usb"])
    job = outbox.journal.get(jobs["usb"][0])
    spooled = dcmread(outbox.spool.path(job.spool_name))
    assert spooled.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert spooled.file_meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert spooled.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert spooled.PixelData == ds.PixelData
    assert (job.sop_instance_uid, job.state, job.commitment) == (ds.SOPInstanceUID, "queued", True)


def test_transfer_syntax_is_journaled_and_an_older_journal_gains_the_column(tmp_path, storescp):
    import sqlite3

    config = outbox_config(tmp_path)
    made = make_instances(tmp_path / "in", 2)
    outbox = Outbox.from_config(config)
    jobs = queue(outbox, config, list(made.values()), storescp.url)
    assert {job.transfer_syntax for job in outbox.journal.jobs_by_id(jobs)} == {"1.2.840.10008.1.2.1"}
    outbox.close()
    # The journal as an earlier version wrote it: no transfer_syntax column.
    with sqlite3.connect(tmp_path / "spool" / "journal.sqlite") as db:
        db.execute("ALTER TABLE instances DROP COLUMN transfer_syntax")
    outbox = Outbox.from_config(config)
    try:
        assert {job.transfer_syntax for job in outbox.journal.jobs_by_id(jobs)} == {None}
        deliver(outbox, config, jobs)  # read from the spooled files instead
        assert {job.state for job in outbox.journal.jobs_by_id(jobs)} == {"sent"}
        assert sorted(received_uids(storescp.extra["received"])) == sorted(made)
    finally:
        outbox.close()


@pytest.mark.parametrize("syncfs", [True, False], ids=["syncfs-per-batch", "fsync-per-file"])
def test_accepted_files_are_made_durable_before_they_are_acknowledged(setup, monkeypatch, syncfs):
    """Linux: one syncfs per batch, after every file is written; elsewhere: an fsync per file."""
    from kiosk.outbox import spool as spool_module

    config, outbox, tmp = setup
    made = make_instances(tmp / "in", 5)
    calls: list[str] = []
    real_fsync, real_sync = os.fsync, spool_module._sync_filesystem

    def fsync(fd):
        calls.append("fsync")
        real_fsync(fd)

    def sync_filesystem(fd):
        records = len(list((tmp / "spool" / "tmp").glob("*.json.part")))
        calls.append(f"syncfs after {len(list((tmp / 'spool' / 'tmp').iterdir())) - records} parts, {records} records")
        real_sync(fd)

    if not syncfs:
        monkeypatch.setattr(spool_module, "_syncfs", None)
    elif spool_module._syncfs is None:
        pytest.skip("this system has no syncfs")
    monkeypatch.setattr(spool_module.os, "fsync", fsync)
    monkeypatch.setattr(spool_module, "_sync_filesystem", sync_filesystem)
    jobs = queue(outbox, config, list(made.values()), "folder:" + str(tmp / "usb"))
    assert len(jobs) == 5
    # The folder's fsync (for the renames) comes last in both cases; records are made durable with their files.
    assert calls == (["syncfs after 5 parts, 5 records", "fsync"] if syncfs else ["fsync"] * 11)
    for job in outbox.journal.jobs_by_id(jobs):
        assert outbox.spool.path(job.spool_name).read_bytes() == made[job.sop_instance_uid].read_bytes()


def test_a_failed_sync_accepts_nothing(setup, monkeypatch):
    import ctypes
    import errno

    from kiosk.outbox import spool as spool_module
    from kiosk.outbox.spool import SpoolError

    if spool_module._syncfs is None:
        pytest.skip("this system has no syncfs")

    def failing_syncfs(fd):
        ctypes.set_errno(errno.EIO)
        return -1

    config, outbox, tmp = setup
    made = make_instances(tmp / "in", 3)
    monkeypatch.setattr(spool_module, "_syncfs", failing_syncfs)
    with pytest.raises(SpoolError) as caught:
        queue(outbox, config, list(made.values()), "folder:" + str(tmp / "usb"))
    assert "Input/output error" in caught.value.message
    assert outbox.journal.jobs() == []
    assert list((tmp / "spool" / "tmp").iterdir()) == list((tmp / "spool" / "files").iterdir()) == []
