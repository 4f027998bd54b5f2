"""Per-destination copies (kiosk.outbox.shaping): coercion to DCMTK storescp, lossy copies to Orthanc.

Objects are made by ``kiosk convert`` and sent with ``kiosk send --to NODE --wait``, as a user does;
what arrived is read from the peer (storescp's files, Orthanc's REST API).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pydicom
import pytest
from PIL import Image
from tests.support.dicomize_helpers import jpeg_bytes, pdf_bytes, pixels_of
from tests.support.outbox_helpers import cli, outbox_config
from tests.support.peers import HOST

from kiosk import lossy
from kiosk import transfer_syntaxes as tsx
from kiosk.cli import main
from kiosk.config import parse_config, to_toml, values_of
from kiosk.outbox import Outbox
from kiosk.outbox.destinations import DicomDestination, Item
from kiosk.outbox.shaping import shaped
from kiosk.part10 import read_meta

VL_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
LEGACY = {"set": {"InstitutionName": "Legacy Campus"}, "remove": ["StationName"], "character_set": "ISO_IR 100",
          "name_format": "{family}^{given}", "sop_class_fallback": {"VLEndoscopicImageStorage": "SecondaryCaptureImageStorage"}}


def convert(folder: Path, *inputs: str, patient: str = "Müller^Jürgen^Karl", accession: str = "") -> dict[str, Path]:
    """``kiosk convert`` of the named inputs (gray.png, rgb.png, film.png, photo.jpg, report.pdf): name -> .dcm."""
    source = folder / "src"
    source.mkdir(parents=True)
    for name in inputs:
        if name == "photo.jpg":
            (source / name).write_bytes(jpeg_bytes(pixels_of("rgb8")[0], quality=92))
        elif name == "report.pdf":
            (source / name).write_bytes(pdf_bytes())
        else:
            Image.fromarray(pixels_of({"gray.png": "gray8", "rgb.png": "rgb8", "film.png": "gray16"}[name])[0]).save(
                source / name)
    options = ["--accession", accession] if accession else []
    assert main(["convert", str(source), "-o", str(folder / "dcm"), "--patient-name", patient, "--patient-id",
                 f"P{abs(hash(folder)) % 10**8}", *options]) == 0
    return {name: folder / "dcm" / f"{Path(name).stem}.dcm" for name in inputs}


def as_utf8_endoscopic(path: Path) -> None:
    """Rewrite a converted object as UTF-8 VL Endoscopic, with text in a sequence item of its own charset."""
    ds = pydicom.dcmread(path)
    ds.decode()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = VL_ENDOSCOPIC
    item = pydicom.Dataset()
    item.SpecificCharacterSet = "ISO_IR 192"
    item.ScheduledProcedureStepDescription = "Magenspiegelung für Jürgen"
    item.ScheduledProcedureStepID = "S1"
    item.RequestedProcedureID = "R1"
    ds.RequestAttributesSequence = [item]
    ds.save_as(path, enforce_file_format=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def storescp_config(tmp_path: Path, peer, coerce: dict, **node) -> Path:
    config = outbox_config(tmp_path, {"legacy": {"ae_title": peer.aet, "host": HOST, "port": peer.port,
                                                 "coerce": coerce, **node}})
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(config))
    return path


def jobs(kiosk) -> list[dict]:
    return json.loads(kiosk("outbox", "list", "--json").stdout)["jobs"]


def spool_unchanged(tmp_path: Path, listing: list[dict]) -> None:
    """Every spool file still has the SHA-256 recorded when it was accepted; no copy is left behind."""
    outbox = Outbox.from_config(outbox_config(tmp_path))
    try:
        for job in outbox.journal.jobs():
            assert sha256(outbox.spool.path(job.spool_name)) == job.sha256
        assert {job.sop_instance_uid for job in outbox.journal.jobs()} == {job["sop_instance_uid"] for job in listing}
        assert not any((outbox.settings.spool_dir / "copies").iterdir())
    finally:
        outbox.close()


def test_coerced_copies_reach_storescp(tmp_path, storescp):
    import kiosk

    assert Path(kiosk.__file__).parent == Path(__file__).parents[2] / "kiosk"  # this checkout's code
    made = convert(tmp_path / "in", "rgb.png", "gray.png")
    as_utf8_endoscopic(made["rgb.png"])
    originals = {name: (sha256(path), pydicom.dcmread(path)) for name, path in made.items()}
    kiosk = cli(storescp_config(tmp_path, storescp, LEGACY))
    result = kiosk("send", str(tmp_path / "in" / "dcm"), "--to", "legacy", "--wait")
    assert "2 of 2 job(s) delivered" in result.stdout
    received = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, storescp.extra["received"].iterdir())}
    for name, (digest, original) in originals.items():
        assert sha256(made[name]) == digest  # the user's file is never changed
        got = received[original.SOPInstanceUID]  # coercion keeps the SOP Instance UID
        assert got.InstitutionName == "Legacy Campus" and "StationName" not in got and "StationName" in original
        assert got.SpecificCharacterSet == "ISO_IR 100"
        assert str(got.PatientName) == "Müller^Jürgen"  # name_format: middle name dropped
        assert got.StudyInstanceUID == original.StudyInstanceUID and got.PatientID == original.PatientID
    endoscopic = received[originals["rgb.png"][1].SOPInstanceUID]
    assert endoscopic.SOPClassUID == endoscopic.file_meta.MediaStorageSOPClassUID == SECONDARY_CAPTURE
    assert received[originals["gray.png"][1].SOPInstanceUID].SOPClassUID == SECONDARY_CAPTURE
    # Latin-1 bytes on the wire, the sequence item's text too (its own UTF-8 label is gone).
    raw = next(p for p in storescp.extra["received"].iterdir()
               if pydicom.dcmread(p).SOPInstanceUID == endoscopic.SOPInstanceUID).read_bytes()
    assert b"M\xfcller^J\xfcrgen" in raw and "für".encode("latin-1") in raw and "ü".encode() not in raw
    [item] = endoscopic.RequestAttributesSequence
    assert item.ScheduledProcedureStepDescription == "Magenspiegelung für Jürgen" and "SpecificCharacterSet" not in item
    spool_unchanged(tmp_path, jobs(kiosk))


def test_a_missing_required_attribute_fails_that_job_only_naming_it(tmp_path, storescp):
    with_number = convert(tmp_path / "a", "gray.png", accession="ACC1")["gray.png"]
    without = convert(tmp_path / "b", "rgb.png")["rgb.png"]  # Accession Number present, but empty
    kiosk = cli(storescp_config(tmp_path, storescp, {"require": ["AccessionNumber"]}))
    result = kiosk("send", str(without), str(with_number), "--to", "legacy", "--wait", check=1)
    assert "1 of 2 job(s) delivered" in result.stdout
    by_uid = {job["sop_instance_uid"]: job for job in jobs(kiosk)}
    refused = by_uid[read_meta(without).sop_instance_uid]
    assert refused["state"] == "failed" and "AccessionNumber (0008,0050) is required" in refused["reason"]
    assert by_uid[read_meta(with_number).sop_instance_uid]["state"] == "sent"
    listing = kiosk("outbox", "list", "--state", "failed").stdout
    assert "AccessionNumber" in listing
    received = [pydicom.dcmread(p).SOPInstanceUID for p in storescp.extra["received"].iterdir()]
    assert received == [read_meta(with_number).sop_instance_uid]
    spool_unchanged(tmp_path, jobs(kiosk))


def test_a_name_latin1_cannot_hold_is_refused_naming_the_attribute(tmp_path, storescp):
    path = convert(tmp_path / "in", "gray.png", patient="Šimková^Anna")["gray.png"]
    digest = sha256(path)
    kiosk = cli(storescp_config(tmp_path, storescp, {"character_set": "ISO_IR 100"}))
    kiosk("send", str(path), "--to", "legacy", "--wait", check=1)
    [job] = jobs(kiosk)
    assert job["state"] == "failed"
    assert "PatientName (0010,0010) does not fit the destination's character set ISO_IR 100" in job["reason"]
    assert "Šimková" not in job["reason"]  # the reason names the attribute, not the patient
    assert "PatientName" in kiosk("outbox", "list").stdout
    assert list(storescp.extra["received"].iterdir()) == []
    assert sha256(path) == digest
    spool_unchanged(tmp_path, jobs(kiosk))


@pytest.mark.parametrize("name", ["jpeg", "j2k-lossy"])
def test_lossy_copies_to_orthanc_are_derived_valid_and_committed(tmp_path, orthanc, dciodvfy, name):
    row = tsx.BY_NAME[name]
    made = convert(tmp_path / "in", "gray.png", "rgb.png", "photo.jpg", "report.pdf")
    uids = {key: read_meta(path).sop_instance_uid for key, path in made.items()}
    digests = {key: sha256(path) for key, path in made.items()}
    base = outbox_config(tmp_path)
    config = parse_config({"local": {"ae_title": "KIOSK", "port": orthanc.extra["kiosk_port"]},
                           "destinations": {"pacs": {"ae_title": orthanc.aet, "host": HOST, "port": orthanc.port,
                                                     "storage_commitment": True, "transfer_syntax": name}},
                           "outbox": values_of(base.outbox)})
    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(to_toml(config))
    kiosk = cli(config_file)
    result = kiosk("send", str(tmp_path / "in" / "dcm"), "--to", "pacs", "--wait", timeout=120)
    assert "4 of 4 job(s) delivered" in result.stdout
    listing = jobs(kiosk)
    assert {job["state"] for job in listing} == {"committed"}  # storage commitment asked for what was sent
    stored = {orthanc.tags(i)["SOPInstanceUID"]: i for i in orthanc.instances()}
    for key in ("gray.png", "rgb.png"):
        uid = lossy.derived_uid(uids[key], "pacs", row.uid)
        assert uid != uids[key] and uid in stored and uids[key] not in stored
        instance = stored[uid]
        assert orthanc_raw(orthanc, f"/instances/{instance}/metadata/TransferSyntax") == row.uid.encode()
        tags = orthanc.tags(instance)
        assert tags["LossyImageCompression"] == "01" and tags["LossyImageCompressionMethod"] == row.method
        assert float(tags["LossyImageCompressionRatio"]) > 1
        assert tags["ImageType"].split("\\")[0] == "DERIVED" and "Lossy compression" in tags["DerivationDescription"]
        [source] = tags["SourceImageSequence"]
        assert source["ReferencedSOPInstanceUID"] == uids[key]
        assert source["PurposeOfReferenceCodeSequence"][0]["CodeValue"] == "121320"
        copy = tmp_path / f"{key}.received.dcm"
        copy.write_bytes(orthanc_raw(orthanc, f"/instances/{instance}/file"))
        dciodvfy(copy)
    # Already lossy (a JPEG photo kept as it is) and no pixels (a PDF): as they are, under their own UIDs.
    assert uids["photo.jpg"] in stored and uids["report.pdf"] in stored
    assert orthanc_raw(orthanc, f"/instances/{stored[uids['photo.jpg']]}/metadata/TransferSyntax") == \
        tsx.JPEG_BASELINE.uid.encode()
    assert all(sha256(made[key]) == digests[key] for key in made)
    spool_unchanged(tmp_path, listing)


def orthanc_raw(orthanc, path: str) -> bytes:
    """An Orthanc REST answer that is not JSON (a metadata value, a file)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{HOST}:{orthanc.extra['http_port']}{path}", timeout=10) as answer:
        return answer.read()


def test_the_hook_for_a_list_of_items_keeps_outcomes_aligned(tmp_path, storescp):
    """As ``kiosk store`` uses it: Items and a NodeConfig in, the copies sent through the destination class,
    one outcome per input item (the refused one in its place)."""
    good = convert(tmp_path / "a", "gray.png", accession="ACC2")["gray.png"]
    bad = convert(tmp_path / "b", "rgb.png")["rgb.png"]
    config = outbox_config(tmp_path, {"legacy": {"ae_title": storescp.aet, "host": HOST, "port": storescp.port,
                                                 "coerce": {"require": ["AccessionNumber"],
                                                            "set": {"InstitutionName": "Legacy Campus"}}}})
    node = config.destinations["legacy"]
    items = [Item(path, *_meta(path)) for path in (bad, good, bad)]
    destination = DicomDestination("legacy", node, config)
    try:
        with shaped(items, node, tmp_path / "work") as ready:
            assert len(ready.items) == 1 and sorted(ready.refused) == [0, 2]
            outcomes = ready.merge(destination.send(ready.items, lambda done, size: None, _never()))
            copy = ready.items[0].path
            assert copy.stat().st_mode & 0o777 == 0o600 and copy.parent.stat().st_mode & 0o777 == 0o700
    finally:
        destination.close()
    assert [o.outcome for o in outcomes] == ["failed", "success", "failed"]
    assert "AccessionNumber" in outcomes[0].message
    assert not copy.exists() and not copy.parent.exists()
    [arrived] = [pydicom.dcmread(p) for p in storescp.extra["received"].iterdir()]
    assert arrived.SOPInstanceUID == read_meta(good).sop_instance_uid and arrived.InstitutionName == "Legacy Campus"


def test_a_destination_without_rules_gets_the_items_themselves(tmp_path):
    path = convert(tmp_path / "in", "gray.png")["gray.png"]
    config = outbox_config(tmp_path, {"plain": {"ae_title": "P", "host": HOST, "port": 104, "transfer_syntax": "j2k",
                                                "coerce": {}}})
    items = [Item(path, *_meta(path))]
    with shaped(items, config.destinations["plain"], tmp_path / "work") as ready:
        assert ready.items[0] is items[0] and not ready.refused
    assert not (tmp_path / "work").exists()  # nothing read, nothing written


def _meta(path: Path) -> tuple:
    meta = read_meta(path)
    return meta.sop_class_uid, meta.sop_instance_uid, path.stat().st_size, meta.transfer_syntax, sha256(path)


def _never():
    import threading

    return threading.Event()


def test_a_destination_no_longer_configured_keeps_the_rules_its_jobs_were_queued_with(tmp_path, storescp):
    from tests.support.outbox_helpers import deliver, queue

    path = convert(tmp_path / "in", "gray.png")["gray.png"]  # no Accession Number
    queued_with = outbox_config(tmp_path, {"legacy": {"ae_title": storescp.aet, "host": HOST, "port": storescp.port,
                                                      "coerce": {"require": ["AccessionNumber"]}}})
    outbox = Outbox.from_config(queued_with)
    try:
        [job_id] = queue(outbox, queued_with, [path], "legacy")
        deliver(outbox, outbox_config(tmp_path), [job_id])  # [destinations.legacy] since removed
        job = outbox.journal.get(job_id)
    finally:
        outbox.close()
    assert job.state == "failed" and "AccessionNumber" in job.reason
    assert list(storescp.extra["received"].iterdir()) == []


def test_kiosk_store_sends_the_coerced_copy_and_names_a_refused_file(tmp_path, storescp):
    made = convert(tmp_path / "in", "gray.png", "rgb.png", accession="ACC7")
    no_accession = convert(tmp_path / "other", "gray.png")["gray.png"]
    rules = {"set": {"InstitutionName": "Legacy Campus"}, "require": ["AccessionNumber"]}
    kiosk = cli(storescp_config(tmp_path, storescp, rules))
    result = kiosk("store", str(made["gray.png"]), str(no_accession), str(made["rgb.png"]), "--to", "legacy", check=1)
    assert "2 of 3 instance(s) stored" in result.stdout
    assert f"FAILED   {no_accession}: not sent to legacy" in result.stdout and "AccessionNumber" in result.stdout
    received = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, storescp.extra["received"].iterdir())}
    assert set(received) == {read_meta(p).sop_instance_uid for p in made.values()}
    assert {ds.InstitutionName for ds in received.values()} == {"Legacy Campus"}
    assert not any((tmp_path / "spool" / "copies").iterdir())  # the copies are gone
