"""The touch UI's Burn CD without a burner: a session's outbox jobs written as a File-set (kiosk.outbox.export),
read back before anything would be burned; a missing drive refused before anything is written."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from pydicom.fileset import FileSet
from tests.support.outbox_helpers import outbox_config

from kiosk.capture import Capture, SourceKind
from kiosk.dicomize import BuildOptions
from kiosk.media.iso import MediaWriteError
from kiosk.media.profiles import EXPLICIT_LE, PROFILES, disc_profile
from kiosk.outbox import Outbox
from kiosk.outbox.destinations import parse_destination
from kiosk.outbox.export import burn_jobs, export_jobs
from kiosk.session import SessionStore
from kiosk.station import OutboxOutput, Station
from kiosk.study import StudyContext

PATIENT = {"patient_name": "Doe^Jane", "patient_id": "P-6", "birth_date": "19800101", "sex": "F",
           "accession": "A-17", "study_description": "Consent"}


@pytest.fixture
def sent(tmp_path):
    """(outbox, the station's job ids): three pages queued by the station for a PACS and a USB stick, not delivered."""
    config = outbox_config(tmp_path, {"pacs": {"ae_title": "PACS", "host": "127.0.0.1", "port": 1}})
    outbox = Outbox.from_config(config)
    specs = dict([parse_destination(config, "pacs"), parse_destination(config, f"folder:{tmp_path / 'usb'}")])
    station = Station.start(SessionStore(tmp_path / "sessions"), StudyContext.manual(**PATIENT),
                            BuildOptions(transfer_syntax="jpeg-ls"))
    for value in (10, 120, 240):
        station.add(Capture(SourceKind.SCANNED_DOCUMENT, pixels=np.full((40, 30), value, np.uint8), dpi=300.0))
    station.send([OutboxOutput(outbox, specs)])
    yield outbox, [job_id for ids in station.jobs.values() for job_id in ids]
    outbox.close()


def test_a_sessions_jobs_become_one_file_set_each_object_once_in_a_cd_profile(tmp_path, sent):
    outbox, job_ids = sent
    assert len(job_ids) == 6  # three objects, two destinations
    disc = tmp_path / "disc"
    disc.mkdir()
    result = export_jobs(outbox, job_ids, disc, disc_profile("STD-GEN-USB-J2K"), web_content=False)
    assert len(result.written) == 3 and not result.failed
    fileset = FileSet(disc / "DICOMDIR")
    instances = list(fileset)
    assert len(instances) == 3 and {str(i.PatientID) for i in instances} == {"P-6"}
    assert {str(i.ReferencedTransferSyntaxUIDInFile) for i in instances} == {EXPLICIT_LE}  # JPEG-LS transcoded
    assert "STD-GEN-CD" in (disc / "README.TXT").read_text()
    assert not (disc / "INDEX.HTM").exists()


def test_changed_spool_files_are_left_out_with_why_and_removed_jobs_are_not_there(tmp_path, sent):
    outbox, job_ids = sent
    jobs = outbox.journal.jobs_by_id(job_ids)
    first, second, _ = sorted({j.spool_name for j in jobs})
    damaged = outbox.spool.path(first)
    damaged.write_bytes(damaged.read_bytes()[:-10])
    gone = [j.id for j in jobs if j.spool_name == second]  # both destinations' jobs: the object is gone
    outbox.remove(gone, force=True)
    disc = tmp_path / "disc"
    disc.mkdir()
    result = export_jobs(outbox, job_ids, disc, PROFILES["STD-GEN-CD"])
    assert len(result.written) == 1 and [path for path, _ in result.failed] == [damaged]
    assert "changed after it was accepted" in result.failed[0][1]
    assert len(list(FileSet(disc / "DICOMDIR"))) == 1


def test_no_drive_is_refused_before_anything_is_written(tmp_path, sent):
    outbox, job_ids = sent
    with pytest.raises(MediaWriteError, match="there is no disc drive"):
        burn_jobs(outbox, job_ids, str(tmp_path / "no-such-drive"), PROFILES["STD-GEN-CD"])
    assert not (outbox.settings.spool_dir / "burn").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a block device node needs root (CI runs as root)")
def test_a_drive_that_fails_to_burn_says_so_and_leaves_no_copy_behind(tmp_path, sent):
    # A block device node of a loop device that does not exist: a "drive" xorriso cannot write to.
    # The File-set and its ISO image are made (xorriso runs), the burn fails, the copy is removed.
    outbox, job_ids = sent
    drive = tmp_path / "sr9"
    os.mknod(drive, stat.S_IFBLK | 0o600, os.makedev(7, 250))
    leftover = outbox.settings.spool_dir / "burn" / "medium"  # as a burn killed half-way leaves it
    leftover.mkdir(parents=True)
    (leftover / "DICOMDIR").write_bytes(b"old")
    with pytest.raises(MediaWriteError, match=f"cannot burn the disc in {drive}"):
        burn_jobs(outbox, job_ids, str(drive), PROFILES["STD-GEN-CD"])
    assert not (outbox.settings.spool_dir / "burn").exists()


def test_a_disc_follows_the_configured_profile_unless_it_is_a_usb_one():
    assert disc_profile("STD-GEN-CD") is PROFILES["STD-GEN-CD"]
    assert disc_profile("STD-GEN-DVD-RAM") is PROFILES["STD-GEN-DVD-RAM"]
    assert {disc_profile(name).name for name in PROFILES if name.startswith("STD-GEN-USB")} == {"STD-GEN-CD"}

