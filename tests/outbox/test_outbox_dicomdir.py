"""A ``folder:`` export (a PDI File-set) carries the kiosk's identity in every DICOM file it writes."""

from __future__ import annotations

from pathlib import Path

from tests.support.outbox_data import make_instances
from tests.support.outbox_helpers import deliver, outbox_config, queue
from pydicom.filereader import read_file_meta_info

from kiosk import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from kiosk.outbox import Outbox


def identities(folder: Path) -> dict[str, tuple[str, str]]:
    """File name (relative) -> (Implementation Class UID, Version Name) of every DICOM file under ``folder``
    (all but the PDI web content and README.TXT)."""
    out = {}
    others = {"README.TXT", "INDEX.HTM"}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in others
                       and p.parent.name != "IHE_PDI"):
        meta = read_file_meta_info(path)
        out[str(path.relative_to(folder))] = (str(meta.ImplementationClassUID),
                                              str(meta.get("ImplementationVersionName", "")))
    return out


def test_the_dicomdir_and_every_file_of_a_folder_export_carry_the_kiosks_implementation_class_uid(tmp_path):
    usb = tmp_path / "usb"
    usb.mkdir()
    config = outbox_config(tmp_path)
    outbox = Outbox.from_config(config)
    try:
        # Files another program wrote (here pydicom, with its own identity), exported in two batches:
        # a new DICOMDIR, then the same one loaded and written again.
        for batch in ("a", "b"):
            jobs = queue(outbox, config, list(make_instances(tmp_path / batch, 2).values()), f"folder:{usb}")
            deliver(outbox, config, jobs)
            assert {job.state for job in outbox.journal.jobs_by_id(jobs)} == {"sent"}
            found = identities(usb)
            assert "DICOMDIR" in found and len(found) == 1 + (2 if batch == "a" else 4)
            assert set(found.values()) == {(IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME)}, found
            assert (usb / "README.TXT").is_file() and (usb / "INDEX.HTM").is_file()
    finally:
        outbox.close()


def test_a_folder_export_is_an_export_event_in_the_audit_trail(tmp_path):
    import time

    from pydicom import dcmread

    from kiosk.audit import trail

    usb = tmp_path / "usb"
    usb.mkdir()
    config = outbox_config(tmp_path)
    outbox = Outbox.from_config(config)
    since = time.time()
    try:
        made = make_instances(tmp_path / "in", 2, patient_id="EXPORT1")
        deliver(outbox, config, queue(outbox, config, list(made.values()), f"folder:{usb}"))
    finally:
        outbox.close()
    [export] = [e for e in trail.queue().entries(since) if e.event == "Export"]
    study = str(dcmread(next(iter(made.values()))).StudyInstanceUID)
    assert export.outcome == 0 and study.encode() in export.frame and b"EXPORT1" in export.frame
    assert f'UserID="{usb}"'.encode() in export.frame and b'csd-code="110154"' in export.frame  # Destination Media
