"""Importing a patient's CD (IHE RAD IRWF.b Importer) into the outbox, against Orthanc as archive and query node."""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

from pydicom import dcmread

from tests.support.foreign_media import fingerprint, make_medium
from tests.support.outbox_helpers import deliver, outbox_config

from kiosk.config import parse_config
from kiosk.media import importer
from kiosk.media.importer import import_media
from kiosk.media.reader import read_medium
from kiosk.media.model import MediaInstance
from kiosk.outbox import Outbox
from kiosk.outbox.destinations import parse_destination
from kiosk.station import Station
from kiosk.study import StudyContext

BIG_ENDIAN = "1.2.840.10008.1.2.2"
LOCAL = StudyContext.manual(patient_name="Local^Anna", patient_id="IMPORT-1", issuer="KIOSKHOSP",
                            birth_date="19700101", sex="F")


def _config(tmp_path: Path, orthanc=None, **media):
    base = outbox_config(tmp_path)
    data = {"local": {"ae_title": "KIOSK"}, "outbox": {"spool_dir": str(base.outbox.spool_dir), "min_free_mb": 0,
                                                        "retry_interval": 0.2, "retry_count": 2},
            "media": media}
    if orthanc is not None:
        data["query"] = {"ae_title": orthanc.aet, "host": "127.0.0.1", "port": orthanc.port}
    return parse_config(data)


def _destinations(config, to: str) -> dict:
    name, spec = parse_destination(config, to)
    return {name: spec}


def _consistent(outbox: Outbox) -> list:
    """Every job of the journal has its whole spool file (nothing half-queued)."""
    jobs = outbox.journal.jobs()
    for job in jobs:
        assert outbox.spool.path(job.spool_name).stat().st_size == job.size
    assert not list(outbox.spool.tmp.glob("*.part"))
    return jobs


def test_an_import_to_orthanc_is_reconciled_and_a_second_import_skips_what_is_there(tmp_path, orthanc):
    orthanc.clear()
    root = tmp_path / "cd"
    made = make_medium(root, studies=2, series=1, per_series=2)
    before = fingerprint(root)
    medium = read_medium(root)
    config = _config(tmp_path, orthanc)
    destinations = _destinations(config, f"ORTHANC@127.0.0.1:{orthanc.port}")
    steps = []
    result = import_media(config, medium, medium.chosen(), LOCAL, destinations, scheduled=False,
                          progress=lambda done, total: steps.append((done, total)))
    assert (result.queued, result.failed, result.skipped, result.warnings) == (4, [], [], [])
    assert steps[-1] == (4, 4)
    outbox = Outbox.from_config(config)
    try:
        deliver(outbox, config, [i for ids in result.jobs.values() for i in ids])
        assert {j.state for j in _consistent(outbox)} == {"sent"}
    finally:
        outbox.close()

    stored = {}
    for instance in orthanc.instances():
        tags = orthanc.rest(f"/instances/{instance}/tags?simplify")
        stored[tags["SOPInstanceUID"]] = tags
    assert sorted(stored) == sorted(made)  # SOP Instance UIDs kept
    for tags in stored.values():
        assert (tags["PatientID"], tags["PatientName"], tags["IssuerOfPatientID"]) == \
            ("IMPORT-1", "Local^Anna", "KIOSKHOSP")
        assert tags["OtherPatientIDsSequence"][0]["PatientID"] == "EXT-4711"
        assert tags["OtherPatientIDsSequence"][0]["IssuerOfPatientID"] == "OTHERHOSP"
        (item,) = tags["OriginalAttributesSequence"]
        assert item["ReasonForTheAttributeModification"] == "COERCE"
        old = item["ModifiedAttributesSequence"][0]
        assert (old["PatientID"], old["PatientName"]) == ("EXT-4711", "Müller^Hans")
    assert {orthanc.rest(f"/patients/{p}")["MainDicomTags"]["PatientID"] for p in orthanc.rest("/patients")} \
        == {"IMPORT-1"}

    again = import_media(config, read_medium(root), medium.chosen(), LOCAL, destinations, scheduled=False)
    assert again.queued == 0 and len(again.skipped) == 4
    assert {why for _, why in again.skipped} == {f"already on the archive (query (ORTHANC@127.0.0.1:{orthanc.port}))"}
    assert fingerprint(root) == before  # the medium is unchanged, nothing was created on it


def test_remapped_uids_give_the_same_study_again_so_a_reimport_is_skipped(tmp_path, orthanc):
    orthanc.clear()
    root = tmp_path / "cd"
    made = make_medium(root, studies=1, series=1, per_series=2, dicomdir=False)
    medium = read_medium(root)
    config = _config(tmp_path, orthanc, remap_uids=True)
    destinations = _destinations(config, f"ORTHANC@127.0.0.1:{orthanc.port}")
    result = import_media(config, medium, medium.chosen(), LOCAL, destinations, scheduled=False)
    outbox = Outbox.from_config(config)
    try:
        deliver(outbox, config, [i for ids in result.jobs.values() for i in ids])
    finally:
        outbox.close()
    (study,) = orthanc.rest("/studies")
    uid = orthanc.rest(f"/studies/{study}")["MainDicomTags"]["StudyInstanceUID"]
    assert uid != medium.patients[0].studies[0].uid and uid.startswith("2.25.")
    assert sorted(orthanc.rest(f"/instances/{i}/simplified-tags")["SOPInstanceUID"] for i in orthanc.instances()) \
        == sorted(made)
    again = import_media(config, medium, medium.chosen(), LOCAL, destinations, scheduled=False)
    assert again.queued == 0 and len(again.skipped) == 2


def test_files_that_went_bad_after_reading_are_named_and_the_rest_is_imported(tmp_path, storescp):
    """The reader leaves out what it finds bad (its own tests); a file may still fail when read whole."""
    root = tmp_path / "cd"
    make_medium(root, studies=1, series=1, per_series=3, dicomdir=False)
    medium = read_medium(root)
    series = medium.patients[0].studies[0].series[0]
    good = list(series.instances)
    not_dicom, cut, short = root / "DICOM" / "README", root / "DICOM" / "CUT", root / "DICOM" / "SHORT"
    not_dicom.write_text("not an image")
    cut.write_bytes(good[0].path.read_bytes()[:400])
    short.write_bytes(good[0].path.read_bytes()[:-100])  # its pixel data cut short

    def like(path: Path, uid: str) -> MediaInstance:
        return MediaInstance(path, good[0].sop_class_uid, uid, good[0].transfer_syntax, 9, 1)

    series.instances = [good[0], like(not_dicom, "1.2.3.1"), like(cut, "1.2.3.2"), like(short, "1.2.3.3"),
                        like(root / "DICOM" / "GONE", "1.2.3.4"), good[2]]
    before = fingerprint(root)
    config = _config(tmp_path)  # no query node: nothing is skipped as already there
    result = import_media(config, medium, medium.chosen(), LOCAL, _destinations(config, storescp.url),
                          scheduled=False)
    failed = {p.path.name: p.problem for p in result.failed}
    assert set(failed) == {"README", "CUT", "SHORT", "GONE"}
    assert "no readable DICOM" in failed["README"] and "cannot be read (No such file" in failed["GONE"]
    assert "bytes long but only" in failed["SHORT"]
    assert result.queued == 2 and not result.stopped and not result.skipped
    outbox = Outbox.from_config(config)
    try:
        assert sorted(j.sop_instance_uid for j in _consistent(outbox)) == sorted([good[0].sop_instance_uid,
                                                                                 good[2].sop_instance_uid])
    finally:
        outbox.close()
    assert fingerprint(root) == before


def test_the_test_cd_of_many_sop_classes_goes_to_orthanc_under_the_local_patient(tmp_path, orthanc, dicom_cd):
    orthanc.clear()
    medium = read_medium(dicom_cd.root)
    before = fingerprint(dicom_cd.root)
    config = _config(tmp_path)
    result = import_media(config, medium, medium.chosen(), LOCAL, _destinations(config, f"ORTHANC@127.0.0.1:{orthanc.port}"),
                          scheduled=False)
    assert not result.failed and result.queued == sum(len(st.instances) for _, st in medium.studies())
    outbox = Outbox.from_config(config)
    try:
        deliver(outbox, config, [i for ids in result.jobs.values() for i in ids], timeout=60)
        failed = [(j.sop_class_uid, j.transfer_syntax) for j in outbox.journal.jobs(state="failed")]
    finally:
        outbox.close()
    assert failed == []
    stored = [orthanc.tags(i) for i in orthanc.instances()]
    assert sorted(t["SOPInstanceUID"] for t in stored) == sorted(i.sop_instance_uid for _, st in medium.studies()
                                                                 for i in st.instances)
    # Explicit VR Big Endian (retired; Orthanc refuses it) arrives as Little Endian, pixels unchanged.
    big = [i for _, st in medium.studies() for i in st.instances if i.transfer_syntax == BIG_ENDIAN]
    assert big
    ids = {orthanc.tags(o)["SOPInstanceUID"]: o for o in orthanc.instances()}
    for inst in big:
        received = dcmread(BytesIO(orthanc.rest_bytes(f"/instances/{ids[inst.sop_instance_uid]}/file")))
        assert received.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert (received.pixel_array == dcmread(inst.path).pixel_array).all()
    assert {t["PatientID"] for t in stored} == {"IMPORT-1"}  # two patients on the CD, one local patient
    assert fingerprint(dicom_cd.root) == before


def test_a_medium_removed_midway_stops_with_whole_chunks_queued(tmp_path, storescp, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_FILES", 2)
    root = tmp_path / "cd"
    make_medium(root, studies=1, series=1, per_series=7, dicomdir=False)
    medium = read_medium(root)
    config = _config(tmp_path)

    def eject(done: int, total: int) -> None:
        if done == 3:
            os.rename(root, tmp_path / "elsewhere")

    station = Station()
    outbox = Outbox.from_config(config)
    try:
        result = import_media(config, medium, medium.chosen(), LOCAL, _destinations(config, storescp.url),
                              scheduled=False, progress=eject, station=station, outbox=outbox)
        assert result.stopped == f"the medium {root} was removed after 3 of 7 instance(s)"
        assert (result.queued, result.not_read, result.failed) == (3, 4, [])
        jobs = _consistent(outbox)
        assert len(jobs) == 3 and sorted(j.id for j in jobs) == sorted(station.jobs[storescp.url])
    finally:
        outbox.close()


def test_an_import_is_an_import_event_in_the_audit_trail(tmp_path, storescp):
    import time

    from kiosk.audit import trail

    root = tmp_path / "cd"
    make_medium(root, studies=1, series=1, per_series=2, dicomdir=False)
    medium = read_medium(root)
    config = _config(tmp_path)
    since = time.time()
    import_media(config, medium, medium.chosen(), LOCAL, _destinations(config, storescp.url), scheduled=False)
    [event] = [e for e in trail.queue().entries(since) if e.event == "Import"]
    study = medium.patients[0].studies[0].uid
    assert event.outcome == 0 and study.encode() in event.frame and b"IMPORT-1" in event.frame
    assert b"EXT-4711" not in event.frame  # the studies as they now are: the local patient
    assert f'UserID="{root.name}"'.encode() in event.frame and b'csd-code="110155"' in event.frame  # Source Media
