"""The audit trail against rsyslog as the Audit Record Repository: what arrives, outages, UDP, a wrong CA."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.audit.rsyslog import Rsyslog
from tests.net.test_net_tls import make_ca, make_cert
from tests.support.outbox_data import make_instances
from tests.support.peers import HOST, free_port, require_binary

from kiosk.audit import events, trail
from kiosk.audit.queue import SENT, WAITING
from kiosk.audit.sender import Sender
from kiosk.config import parse_config, to_toml
from kiosk.net.listener import Listener

APP = "110150"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audit-pki")
    make_ca(folder, "testca")
    make_ca(folder, "otherca")
    make_cert(folder, "server", "testca", "IP:127.0.0.1,DNS:localhost")
    return folder


@pytest.fixture
def rsyslog(tmp_path, pki):
    server = Rsyslog(tmp_path / "rsyslog", free_port(), pki)
    yield server
    server.stop()


def kiosk_config(tmp_path: Path, repository: str, ca: str = "", **sections: dict):
    values = {"local": {"ae_title": "KIOSK", "station_name": "ROOM7", "port": free_port()},
              "outbox": {"spool_dir": str(tmp_path / "spool"), "min_free_mb": 0, "retry_interval": 0.2,
                         "retry_max_interval": 1.0, "retry_count": 2},
              "audit": {"repository": repository, "ca": ca}, **sections}
    config = parse_config(values)
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(config))
    return parse_config(values, path)


class Kiosk:
    """``kiosk`` subprocesses sharing one data dir (so one audit queue) with this process's trail."""

    def __init__(self, tmp_path: Path, config) -> None:  # noqa: ANN001 - Config
        self.config, self.env = config, {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
                                         "XDG_STATE_HOME": str(tmp_path / "state")}
        self.log_file = tmp_path / "state" / "kiosk" / "log" / "kiosk.log"
        trail.configure(config, tmp_path / "data" / "kiosk" / "audit")

    def __call__(self, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(self.config.path), *args],
                                capture_output=True, text=True, timeout=120, env=self.env)
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
        if check is not None:
            assert result.returncode == check, result.stdout + result.stderr
        return result

    def listed(self) -> list[dict]:
        return json.loads(self("audit", "list", "--json").stdout)


@pytest.fixture(autouse=True)
def fresh_trail():
    yield
    trail.configure(parse_config({}))


def by_event(received, code: str):
    return [m for m in received if m.event_id() == code]


def test_send_query_and_rejection_reach_rsyslog_over_tls(tmp_path, pki, rsyslog, storescp, wlmscpfs):
    rsyslog.start()
    config = kiosk_config(tmp_path, f"tls://127.0.0.1:{rsyslog.port}", str(pki / "testca.crt"),
                          destinations={"pacs": {"ae_title": storescp.aet, "host": HOST, "port": storescp.port}},
                          worklist={"ae_title": wlmscpfs.aet, "host": HOST, "port": wlmscpfs.port})
    kiosk = Kiosk(tmp_path, config)
    made = make_instances(tmp_path / "in", 3, patient_id="AUDIT1")
    kiosk("send", str(tmp_path / "in"), "--to", "pacs", "--wait")
    kiosk("worklist", "--date", "")
    # A stranger calls our listener: rejected (or dropped on the fast path), and audited.
    with Listener(config.local, [], port=free_port()) as listener:
        subprocess.run([require_binary("echoscu"), "-aet", "STRANGER", "-aec", "KIOSK", HOST, str(listener.port)],
                       capture_output=True, timeout=30)
    kiosk("audit", "send")

    listed = kiosk.listed()
    assert listed and all(entry["state"] == SENT for entry in listed), listed
    received = rsyslog.wait_for(len(listed))
    # All of them, in the order recorded.
    assert [m.xml.find("EventIdentification/EventID").get("originalText") for m in received] == \
        [e["event"] for e in listed]
    header = received[0].header
    assert header[0] in ("<85>1", "<84>1") and header[3:7] == ["kiosk", header[4], "IHE+RFC-3881", "-"]

    # Application Activity: the delivery service started and stopped, the kiosk as the application.
    activity = by_event(received, "110100")
    assert [m.event_type() for m in activity] == ["110120", "110121"]
    assert any(APP in p["roles"] and p["AlternativeUserID"] == "AETITLES=KIOSK" for p in activity[0].participants())

    # Begin Transferring and Instances Transferred: the study and its patient, the destination's AE title.
    import pydicom

    first = pydicom.dcmread(next(iter(made.values())), stop_before_pixels=True)
    for code in ("110102", "110104"):
        (message,) = by_event(received, code)
        assert message.outcome() == 0
        assert ("110180", str(first.StudyInstanceUID), "2") in message.objects()
        assert ("2", "AUDIT1", "1") in message.objects()
        roles = {p["UserID"]: p["roles"] for p in message.participants()}
        assert roles[storescp.aet] == ["110152"] and ["110153"] in roles.values()
        assert message.xml.find("ParticipantObjectIdentification/SOPClass").get("NumberOfInstances") == "3"

    # Query: the worklist SOP class and the identifier sent, base64.
    (query,) = by_event(received, "110112")
    assert query.objects()[0][:2] == ("110181", "1.2.840.10008.5.1.4.31")
    identifier = base64.b64decode(query.xml.findtext("ParticipantObjectIdentification/ParticipantObjectQuery"))
    assert b"\x40\x00\x00\x01SQ" in identifier  # (0040,0100) Scheduled Procedure Step Sequence, explicit VR LE
    assert any(p["UserID"] == wlmscpfs.aet and p["roles"] == ["110152"] for p in query.participants())

    # Security Alert: the stranger, node authentication, a minor failure.
    (alert,) = by_event(received, "110113")
    assert alert.event_type() == "110126" and alert.outcome() == 4
    assert any(p.get("NetworkAccessPointID") == "127.0.0.1" for p in alert.participants())

    # kiosk audit list shows them, one line each; the log files name no patient.
    text = kiosk("audit", "list").stdout
    assert "Begin Transferring DICOM Instances" in text and "Query" in text and "[sent]" in text
    assert "AUDIT1" not in kiosk.log_file.read_text()


def wait_until(condition, what: str, timeout: float = 30.0) -> None:  # noqa: ANN001 - a callable
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_outage_messages_wait_and_arrive_in_order_once_the_repository_is_back(tmp_path, pki, rsyslog, caplog):
    caplog.set_level(logging.INFO, logger="kiosk.audit")
    config = kiosk_config(tmp_path, f"tls://127.0.0.1:{rsyslog.port}", str(pki / "testca.crt"))
    Kiosk(tmp_path, config)
    app = trail.application()
    rsyslog.start()
    sender = Sender(trail.queue(), config.audit, backoff_first=0.1, backoff_max=0.3).start()
    try:
        sender.wake()
        trail.record(events.application_activity(app, True, "before"))
        sender.wake()
        wait_until(lambda: not trail.queue().waiting(), "the first message to go")
        rsyslog.stop()
        ids = [trail.record(events.application_activity(app, True, f"outage {n}")) for n in range(5)]
        sender.wake()
        wait_until(lambda: all(e.attempts >= 2 for e in trail.queue().waiting()), "attempts while it is down")
        waiting = trail.queue().waiting()
        assert [e.id for e in waiting] == ids and all("cannot connect" in e.reason for e in waiting)
        rsyslog.start()  # on the same port
        wait_until(lambda: not trail.queue().waiting(), "the queue to empty once it is back")
    finally:
        sender.stop()
    received = rsyslog.wait_for(6)
    assert [m.description() for m in received] == ["before"] + [f"outage {n}" for n in range(5)]
    assert "audit: messages wait: cannot connect to the audit repository" in caplog.text
    assert "answers again" in caplog.text


def test_udp_delivers_one_message_per_datagram(tmp_path):
    server = Rsyslog(tmp_path / "rsyslog", free_port(), None).start()
    try:
        config = kiosk_config(tmp_path, f"udp://127.0.0.1:{server.port}")
        kiosk = Kiosk(tmp_path, config)
        for n in range(3):
            trail.record(events.user_authentication(trail.application(), f"op{n}", succeeded=n != 1, reason="test"))
        assert "3 audit message(s) sent" in kiosk("audit", "send").stdout
        received = server.wait_for(3)
    finally:
        server.stop()
    assert [m.event_id() for m in received] == ["110114"] * 3
    assert [m.outcome() for m in received] == [0, 4, 0]
    assert [m.participants()[0]["UserID"] for m in received] == ["op0", "op1", "op2"]


def test_a_wrong_ca_keeps_the_messages_and_says_why(tmp_path, pki, rsyslog, caplog):
    rsyslog.start()
    config = kiosk_config(tmp_path, f"tls://127.0.0.1:{rsyslog.port}", str(pki / "otherca.crt"))
    kiosk = Kiosk(tmp_path, config)
    trail.record(events.application_activity(trail.application(), True, "wrong CA"))
    result = kiosk("audit", "send", check=1)
    assert "not trusted" in result.stderr and "[audit] ca" in result.stderr
    (entry,) = kiosk.listed()
    assert entry["state"] == WAITING and "not trusted" in entry["reason"]
    # The sender thread says so in the log, once, without a traceback; the message keeps waiting.
    sender = Sender(trail.queue(), config.audit, backoff_first=0.1, backoff_max=0.2).start()
    try:
        wait_until(lambda: trail.queue().waiting()[0].attempts >= 3, "a few attempts")
    finally:
        sender.stop()
    warnings = [r for r in caplog.records if "messages wait" in r.getMessage()]
    assert len(warnings) == 1 and "not trusted" in warnings[0].getMessage() and warnings[0].exc_info is None
    assert rsyslog.messages() == [] and len(trail.queue().waiting()) == 1
