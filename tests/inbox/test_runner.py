"""The watched folder: documents filed by the rules against DCMTK's wlmscpfs and delivered to storescp,
held for a person, or set aside; files still being written are left alone."""

from __future__ import annotations

import os
import time

import pytest
from pydicom import dcmread

from kiosk.inbox.runner import Runner, run_once
from kiosk.inbox.store import Inbox
from kiosk.outbox import Outbox
from kiosk.outbox.worker import idle
from tests.inbox.inbox_helpers import drop, inbox_config, slow_copy, text_pdf
from tests.support.outbox_helpers import deliver
from tests.support.worklist_data import make_worklist_item, standard_items

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SETTLE = 0.3


@pytest.fixture
def worklist_items():
    # Standard items (PID100/ACC100, PID192/ACC192, PID087/ACC087) and a patient with two orders today.
    return [*standard_items(), make_worklist_item("TWICE^TOM", "PID200", "ACC200"),
            make_worklist_item("TWICE^TOM", "PID200", "ACC201")]


@pytest.fixture(autouse=True)
def private_user_data(tmp_path, monkeypatch):
    """The Inbox's store under this test's own user data dir."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def _settled() -> None:
    time.sleep(SETTLE + 0.1)


def _deliver_all(config) -> None:
    outbox = Outbox.from_config(config)
    try:
        deliver(outbox, config, lambda: idle(outbox))
    finally:
        outbox.close()


def _received(storescp) -> list:
    return [dcmread(p) for p in sorted(storescp.extra["received"].rglob("*")) if p.is_file()]


def test_a_pdf_named_for_one_worklist_patient_is_filed_and_delivered(tmp_path, wlmscpfs, storescp):
    config = inbox_config(tmp_path, worklist=wlmscpfs, name_pattern=r"^(?P<patient_id>PID\d+)_",
                          send_to=[storescp.url])
    watched = tmp_path / "watched"
    pdf = text_pdf("Referral letter")
    drop(watched, "PID100_referral.pdf", pdf)
    _settled()
    result = run_once(config)
    [outcome] = result.outcomes
    assert outcome.action == "filed", outcome
    assert "worklist match by ID PID100" in outcome.detail
    assert outcome.path == watched / "done" / "PID100_referral.pdf" and outcome.path.read_bytes() == pdf
    assert not (watched / "PID100_referral.pdf").exists()
    _deliver_all(config)
    [ds] = _received(storescp)
    assert ds.SOPClassUID == ENCAPSULATED_PDF and ds.PatientID == "PID100" and ds.AccessionNumber == "ACC100"
    assert bytes(ds.EncapsulatedDocument).rstrip(b"\0") == pdf
    assert ds.ConversionType == "WSD"
    assert Inbox(config).held() == []


def test_as_pages_sends_secondary_capture_pages_found_by_accession(tmp_path, wlmscpfs, storescp):
    config = inbox_config(tmp_path, worklist=wlmscpfs, name_pattern=r"(?P<accession>ACC\d+)",
                          send_to=[storescp.url], as_pages=True)
    drop(tmp_path / "watched", "scan ACC192.pdf", text_pdf("Consent", pages=2))
    _settled()
    [outcome] = run_once(config).outcomes
    assert outcome.action == "filed" and outcome.objects == 2, outcome
    _deliver_all(config)
    received = _received(storescp)
    assert [ds.SOPClassUID for ds in received] == [SECONDARY_CAPTURE] * 2
    assert {ds.PatientID for ds in received} == {"PID192"} and {ds.AccessionNumber for ds in received} == {"ACC192"}
    assert received[0].Rows > 1000  # an A4 page drawn at 150 dpi


def test_two_matches_or_none_hold_the_document_with_why(tmp_path, wlmscpfs):
    config = inbox_config(tmp_path, worklist=wlmscpfs, name_pattern=r"^(?P<patient_id>PID\d+)_",
                          send_to=["X@127.0.0.1:104"])
    watched = tmp_path / "watched"
    drop(watched, "PID200_letter.pdf", text_pdf("Letter"))
    drop(watched, "PID999_letter.pdf", text_pdf("Letter"))
    drop(watched, "no-id.pdf", text_pdf("Letter"))
    _settled()
    result = run_once(config)
    reasons = {o.name: o.detail for o in result.outcomes}
    assert {o.action for o in result.outcomes} == {"held"}
    assert reasons == {"PID200_letter.pdf": "2 worklist items match ID PID200",
                       "PID999_letter.pdf": "no worklist item matches ID PID999",
                       "no-id.pdf": "the name does not match name_pattern"}
    held = Inbox(config).held()
    assert sorted(i.name for i in held) == sorted(reasons)
    for item in held:
        assert item.source == "folder" and item.reason == reasons[item.name]
        assert item.original == str(watched / "held" / item.name) and os.path.exists(item.original)
    assert [p.name for p in watched.iterdir() if p.is_file()] == []
    assert run_once(config).outcomes == []  # held files are not taken again


def test_an_unreachable_worklist_holds_and_no_rule_holds(tmp_path):
    from tests.support.peers import free_port

    class Down:
        aet, port = "WLM", free_port()

    config = inbox_config(tmp_path, worklist=Down, name_pattern=r"^(?P<patient_id>PID\d+)_")
    drop(tmp_path / "watched", "PID100_x.png", _png())
    _settled()
    [outcome] = run_once(config).outcomes
    assert outcome.action == "held" and outcome.detail.startswith("the worklist did not answer: "), outcome

    plain = inbox_config(tmp_path / "plain")
    drop(tmp_path / "plain" / "watched", "PID100_x.png", _png())
    _settled()
    [outcome] = run_once(plain).outcomes
    assert outcome.detail == "no rule is configured to find the patient ([inbox] name_pattern, text_pattern)"


def test_text_pattern_reads_the_pdf_and_the_reason_does_not_quote_it(tmp_path, wlmscpfs, storescp):
    config = inbox_config(tmp_path, worklist=wlmscpfs, text_pattern=r"Patient ID: (?P<patient_id>\S+)",
                          send_to=[storescp.url])
    watched = tmp_path / "watched"
    drop(watched, "report.pdf", text_pdf("Discharge report", "Patient ID: PID087"))
    drop(watched, "other.pdf", text_pdf("Patient ID: PID555"))
    _settled()
    outcomes = {o.name: o for o in run_once(config).outcomes}
    assert outcomes["report.pdf"].action == "filed" and "by the PDF's text" in outcomes["report.pdf"].detail
    assert outcomes["other.pdf"].action == "held"
    assert outcomes["other.pdf"].detail == "no worklist item matches the patient ID in the PDF's text"
    _deliver_all(config)
    [ds] = _received(storescp)
    assert ds.PatientID == "PID087"


def test_a_corrupt_pdf_goes_to_failed_with_a_reason(tmp_path):
    config = inbox_config(tmp_path, name_pattern=r"(?P<patient_id>PID\d+)")
    watched = tmp_path / "watched"
    drop(watched, "PID100.pdf", b"%PDF-1.4\n1 0 obj garbage\n%%EOF\n")
    drop(watched, "notes.txt", b"plain text")
    _settled()
    result = run_once(config)
    assert {o.name: o.action for o in result.outcomes} == {"PID100.pdf": "failed", "notes.txt": "failed"}
    reason = (watched / "failed" / "PID100.pdf.reason").read_text()
    assert "is not a readable PDF" in reason and "not sent" in reason
    assert (watched / "failed" / "PID100.pdf").exists() and (watched / "failed" / "notes.txt.reason").exists()
    assert run_once(config).outcomes == []  # .reason files and failed/ are not taken


def test_done_days_deletes_old_done_files_only(tmp_path):
    config = inbox_config(tmp_path, done_days=1.0)
    done = tmp_path / "watched" / "done"
    done.mkdir()
    (done / "old.pdf").write_bytes(b"old")
    (done / "new.pdf").write_bytes(b"new")
    two_days_ago = time.time() - 2 * 86400
    os.utime(done / "old.pdf", (two_days_ago, two_days_ago))
    assert run_once(config).deleted == 1
    assert [p.name for p in done.iterdir()] == ["new.pdf"]
    assert run_once(inbox_config(tmp_path, done_days=0.0)).deleted == 0


def test_a_slow_copy_is_taken_only_once_settled_and_a_rename_when_settled(tmp_path):
    config = inbox_config(tmp_path, settle_seconds=0.5)
    watched = tmp_path / "watched"
    runner = Runner(config, remember=True)
    writer = slow_copy(text_pdf("Slow", pages=3), watched / "slow.pdf", chunks=8, pause=0.15)
    looks = 0
    try:
        while writer.is_alive():
            result = runner.run_once()
            assert result.outcomes == [], "taken while it was being written"
            looks += 1
            time.sleep(0.05)
        assert looks >= 5
        drop(watched, "renamed.pdf", text_pdf("Renamed"))  # complete at once
        taken: dict[str, str] = {}
        deadline = time.monotonic() + 5
        while len(taken) < 2 and time.monotonic() < deadline:
            taken.update({o.name: o.action for o in runner.run_once().outcomes})
            time.sleep(0.1)
    finally:
        writer.join()
        runner.close()
    assert taken == {"slow.pdf": "held", "renamed.pdf": "held"}
    [item] = [i for i in Inbox(config).held() if i.name == "slow.pdf"]
    assert item.path.read_bytes() == text_pdf("Slow", pages=3)


def test_temporary_names_are_never_taken(tmp_path):
    config = inbox_config(tmp_path)
    watched = tmp_path / "watched"
    for name in ("a.pdf.part", "~$report.pdf", ".hidden.pdf", "b.crdownload", "c.tmp"):
        (watched / name).write_bytes(text_pdf("x"))
    _settled()
    result = run_once(config)
    assert result.outcomes == [] and result.waiting == 0


def test_a_print_job_pair_is_taken_with_its_sidecar(tmp_path, wlmscpfs, storescp):
    config = inbox_config(tmp_path, worklist=wlmscpfs, name_pattern=r"^(?P<patient_id>PID\d+) ",
                          send_to=[storescp.url])
    spool = tmp_path / "print"
    spool.mkdir(mode=0o700)
    import json

    def job(name: str, title: str) -> None:  # as the backend writes it: the PDF, then the sidecar renamed in
        (spool / f"{name}.pdf").write_bytes(text_pdf(title))
        (spool / f".{name}.json.tmp").write_text(json.dumps({"title": title, "user": "alice", "host": "ws12"}))
        os.rename(spool / f".{name}.json.tmp", spool / f"{name}.json")

    job("job-1", "PID100 referral.docx")
    job("job-2", "Untitled - Notepad")
    (spool / "job-3.pdf").write_bytes(b"%PDF-1.4 half")  # no sidecar yet: not complete
    outcomes = {o.name: o for o in run_once(config).outcomes}
    assert outcomes["PID100 referral.docx"].action == "filed"
    assert (spool / "done" / "job-1.pdf").exists() and (spool / "done" / "job-1.json").exists()
    assert outcomes["Untitled - Notepad"].action == "held"
    [item] = Inbox(config).held()
    assert (item.source, item.name, item.user, item.host) == ("print", "Untitled - Notepad", "alice", "ws12")
    assert (spool / "held" / "job-2.json").exists() and (spool / "job-3.pdf").exists()
    Inbox(config).release(item.id)
    assert (spool / "done" / "job-2.pdf").exists() and (spool / "done" / "job-2.json").exists()
    _deliver_all(config)
    [ds] = _received(storescp)
    assert ds.PatientID == "PID100"


def test_a_dicom_file_goes_as_it_is_only_when_its_name_names_it(tmp_path, storescp):
    from pydicom.data import get_testdata_file

    config = inbox_config(tmp_path, name_pattern=r"^(?P<patient_id>[^_]+)_", send_to=[storescp.url])
    source = get_testdata_file("CT_small.dcm")
    own = str(dcmread(source, stop_before_pixels=True).PatientID)
    watched = tmp_path / "watched"
    drop(watched, f"{own}_ct.dcm", open(source, "rb").read())
    drop(watched, "OTHER_ct.dcm", open(source, "rb").read())
    _settled()
    outcomes = {o.name: o.action for o in run_once(config).outcomes}
    assert outcomes == {f"{own}_ct.dcm": "filed", "OTHER_ct.dcm": "held"}
    _deliver_all(config)
    [ds] = _received(storescp)
    assert ds.SOPInstanceUID == dcmread(source).SOPInstanceUID


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (40, 30), "white").save(out, "PNG")
    return out.getvalue()


def test_a_patient_known_only_to_the_pacs_gets_a_new_study_and_two_patients_hold(tmp_path, orthanc):
    import io

    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    orthanc.clear()
    old_studies = []
    for name, patient_id, issuer in (("PACS^PAT", "INBOX-P1", ""), ("ONE^ANNA", "INBOX-P2", "A"),
                                     ("OTHER^OTTO", "INBOX-P2", "B")):
        ds = dcmread(get_testdata_file("CT_small.dcm"))
        ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = name, patient_id, issuer
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out = io.BytesIO()
        ds.save_as(out)
        orthanc.rest("/instances", "POST", out.getvalue())
        old_studies.append(ds.StudyInstanceUID)
    config = inbox_config(tmp_path, query=orthanc, name_pattern=r"^(?P<patient_id>INBOX-P\d)_",
                          send_to=[f"{orthanc.aet}@127.0.0.1:{orthanc.port}"])
    watched = tmp_path / "watched"
    drop(watched, "INBOX-P1_letter.pdf", text_pdf("Letter"))
    drop(watched, "INBOX-P2_letter.pdf", text_pdf("Letter"))
    drop(watched, "INBOX-P9_letter.pdf", text_pdf("Letter"))
    _settled()
    outcomes = {o.name: o for o in run_once(config).outcomes}
    assert outcomes["INBOX-P1_letter.pdf"].action == "filed"
    assert "PACS match by ID INBOX-P1" in outcomes["INBOX-P1_letter.pdf"].detail
    assert outcomes["INBOX-P2_letter.pdf"].detail == "2 different PACS patients have ID INBOX-P2"
    assert outcomes["INBOX-P9_letter.pdf"].detail == "no PACS patient with ID INBOX-P9"
    _deliver_all(config)
    [pdf] = [t for t in (orthanc.tags(i) for i in orthanc.instances()) if t["SOPClassUID"] == ENCAPSULATED_PDF]
    assert (pdf["PatientID"], pdf["PatientName"]) == ("INBOX-P1", "PACS^PAT")
    assert pdf["StudyInstanceUID"] not in old_studies  # a new study of that patient
