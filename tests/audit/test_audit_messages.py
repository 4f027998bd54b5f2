"""The builders' XML (PS3.15 A.5) and the local queue, without a repository."""

from __future__ import annotations

import base64
import datetime as dt
import stat
import xml.etree.ElementTree as ET

import pytest

from kiosk.audit import codes, events, syslog, trail
from kiosk.audit.codes import Action, Outcome
from kiosk.audit.queue import AuditQueue
from kiosk.cli.audit import parse_since
from kiosk.config import parse_config

APP = events.Application("KIOSK", "ROOM7", host="kiosk.example", pid=42, site="Hospital")
PEER = events.Peer("PACS", "10.1.2.3")
STUDY = events.Study("1.2.3", "P<1>&2", "O'BRIEN^JO <x>", (("1.2.840.10008.5.1.4.1.1.7", 2),), "ACC1")


def xml(message) -> ET.Element:  # noqa: ANN001 - AuditMessage
    return ET.fromstring(message.xml())


def test_every_builder_gives_its_event_id_and_the_kiosk_as_participant():
    built = {
        "110100": events.application_activity(APP, True, "touch UI"),
        "110114": events.user_authentication(APP, "alice", login=False),
        "110112": events.query(APP, PEER, "1.2.840.10008.5.1.4.31", b"\x08\x00\x50\x00"),
        "110102": events.begin_transferring(APP, PEER, [STUDY]),
        "110104": events.instances_transferred(APP, PEER, [STUDY], Outcome.MINOR_FAILURE),
        "110103": events.instances_accessed(APP, [STUDY], operator="alice"),
        "110106": events.export(APP, "USB1", [STUDY]),
        "110107": events.import_(APP, "USB1", [STUDY]),
        "110113": events.security_alert(APP, codes.NODE_AUTHENTICATION, "X@h", "rejected", peer=PEER),
        "110109": events.order_record(APP, STUDY, Action.UPDATE),
        "110111": events.procedure_record(APP, STUDY, "1.2.9", Action.CREATE, PEER),
    }
    for code, message in built.items():
        root = xml(message)
        assert root.find("EventIdentification/EventID").get("csd-code") == code
        assert root.find("EventIdentification").get("EventOutcomeIndicator") in ("0", "4")
        kiosk = [p for p in root.findall("ActiveParticipant") if p.get("AlternativeUserID") == "AETITLES=KIOSK"]
        assert kiosk and kiosk[0].get("UserID") == "42" and kiosk[0].get("NetworkAccessPointID") == "kiosk.example"
        assert root.find("AuditSourceIdentification").get("AuditSourceID") == "ROOM7"
        dt.datetime.fromisoformat(root.find("EventIdentification").get("EventDateTime"))


def test_patient_and_study_objects_survive_markup_characters():
    root = xml(events.instances_transferred(APP, PEER, [STUDY]))
    study, patient = root.findall("ParticipantObjectIdentification")
    assert (study.get("ParticipantObjectID"), study.find("ParticipantObjectIDTypeCode").get("csd-code")) == \
        ("1.2.3", "110180")
    assert study.find("SOPClass").attrib == {"UID": "1.2.840.10008.5.1.4.1.1.7", "NumberOfInstances": "2"}
    assert study.find("Accession").get("Number") == "ACC1"
    assert patient.get("ParticipantObjectID") == "P<1>&2" and patient.get("ParticipantObjectTypeCode") == "1"
    assert patient.find("ParticipantObjectIDTypeCode").attrib == {
        "csd-code": "2", "codeSystemName": "RFC-3881", "originalText": "Patient Number"}
    assert patient.findtext("ParticipantObjectName") == "O'BRIEN^JO <x>"


def test_query_carries_the_identifier_and_its_transfer_syntax():
    root = xml(events.query(APP, PEER, "1.2.840.10008.5.1.4.31", b"\x08\x00\x50\x00", Outcome.SERIOUS_FAILURE,
                            description="no answer"))
    (obj,) = root.findall("ParticipantObjectIdentification")
    assert base64.b64decode(obj.findtext("ParticipantObjectQuery")) == b"\x08\x00\x50\x00"
    assert base64.b64decode(obj.find("ParticipantObjectDetail").get("value")) == b"1.2.840.10008.1.2.1"
    assert root.find("EventIdentification").get("EventOutcomeIndicator") == "8"
    assert root.findtext("EventIdentification/EventOutcomeDescription") == "no answer"


def test_syslog_frame_is_rfc_5424_with_a_bom():
    when = dt.datetime(2026, 12, 1, 20, 0, tzinfo=dt.timezone.utc)
    data = syslog.frame(b"<AuditMessage/>", when, "kiosk host", 42, failure=True)
    head, _, body = data.partition(syslog.BOM)
    assert head.decode().split(" ")[0] == "<84>1" and head.decode().split(" ")[2:7] == [
        "kioskhost", "kiosk", "42", "IHE+RFC-3881", "-"]
    assert body == b"<AuditMessage/>"


def test_the_queue_is_private_ordered_and_keeps_unsent_messages(tmp_path):
    queue = AuditQueue(tmp_path / "audit")
    ids = [queue.add("Query", "", 0, f"n{n}", b"frame", created=1000.0 + n) for n in range(3)]
    assert stat.S_IMODE((tmp_path / "audit").stat().st_mode) == 0o700
    assert stat.S_IMODE(queue.path.stat().st_mode) == 0o600
    queue.mark_sent(ids[:1])
    assert [e.id for e in queue.waiting()] == ids[1:]
    assert queue.delete_sent_before(2000.0) == 1  # the unsent ones stay, however old
    assert [e.summary for e in queue.entries()] == ["n1", "n2"]


def test_record_never_raises(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    trail.configure(parse_config({}), blocker / "audit")  # a folder that cannot exist
    try:
        assert trail.record(events.application_activity(trail.application(), True, "x")) is None
    finally:
        trail.configure(parse_config({}))
    assert "could not be kept" in caplog.text


def test_since_takes_dates_and_durations():
    now = dt.datetime(2026, 12, 1, 12, 0).astimezone()
    assert parse_since("2h", now) == now.timestamp() - 7200
    assert parse_since("2026-12-01", now) == dt.datetime(2026, 12, 1).astimezone().timestamp()
    assert parse_since(None) == 0.0
    with pytest.raises(Exception, match="neither a date nor a duration"):
        parse_since("yesterday", now)


def test_sign_in_makes_the_operator_the_requestor_until_sign_out(tmp_path):
    trail.configure(parse_config({}), tmp_path / "audit")
    try:
        trail.authenticated("alice", succeeded=False, reason="wrong PIN")
        assert trail.operator() is None
        trail.authenticated("alice")
        accessed = events.instances_accessed(trail.application(), [STUDY], operator=trail.operator())
        trail.authenticated("alice", login=False)
        assert trail.operator() is None
        entries = trail.queue().entries()
    finally:
        trail.configure(parse_config({}))
    assert [(e.event_type, e.outcome) for e in entries] == [("Login", 4), ("Login", 0), ("Logout", 0)]
    (person,) = [p for p in xml(accessed).findall("ActiveParticipant") if p.get("UserID") == "alice"]
    assert person.get("UserIsRequestor") == "true"
