"""Storage commitment with Orthanc (report on a new association to our listener) and scripted peers;
our listener's allow-list."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid
from pynetdicom import evt

from kiosk.cli import main
from kiosk.config import LocalConfig, parse_config, parse_node_url
from kiosk.net.commitment import STORAGE_COMMITMENT, request_commitment
from kiosk.net.echo import echo
from kiosk.net.errors import NetworkError
from kiosk.net.listener import Listener, PendingReport
from kiosk.net.store import store_files
from tests.support.net_data import ScriptedSCP, make_sc
from tests.support.peers import HOST, free_port

LOCAL = LocalConfig()


def test_orthanc_commits_stored_instances_and_fails_an_unknown_one(orthanc, tmp_path):
    node = parse_node_url(orthanc.url)
    local = dataclasses.replace(LOCAL, port=orthanc.extra["kiosk_port"])
    files = [make_sc(tmp_path / f"c{n}.dcm", seed=n) for n in range(2)]
    result = store_files(node, local, files)
    assert result.ok
    stored = [(r.sop_class_uid, r.sop_instance_uid) for r in result.results]
    missing = (SecondaryCaptureImageStorage, generate_uid())
    with Listener(local, [node]) as listener:
        outcome = request_commitment(node, local, [*stored, missing], listener=listener, timeout=10)
    assert outcome.committed == {uid for _, uid in stored}
    assert set(outcome.failed) == {missing[1]} and outcome.failed[missing[1]] != 0
    assert outcome.unconfirmed == set()


def test_cli_store_commit_with_orthanc(orthanc, tmp_path, capsys):
    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(f'[local]\nport = {orthanc.extra["kiosk_port"]}\n'
                           f'[destinations.pacs]\nae_title = "{orthanc.aet}"\nhost = "{HOST}"\nport = {orthanc.port}\n'
                           'storage_commitment = true\n')
    path = make_sc(tmp_path / "x.dcm")
    assert main(["--config", str(config_file), "store", str(path), "--to", "pacs"]) == 0
    out = capsys.readouterr().out
    assert "storage commitment: 1 committed, 0 failed, 0 not confirmed" in out


def _commitment_scp(report_on_same_association: bool, answers: list | None = None):
    """An SCP that answers N-ACTION and then reports on the same association, or never.

    The status of our N-EVENT-REPORT-RSP goes into ``answers`` (None: no answer).
    """

    def on_action(event):
        info = event.action_information
        if report_on_same_association:
            def report():
                ds = Dataset()
                ds.TransactionUID = info.TransactionUID
                ds.ReferencedSOPSequence = info.ReferencedSOPSequence
                status, _ = event.assoc.send_n_event_report(ds, 1, STORAGE_COMMITMENT, "1.2.840.10008.1.20.1.1")
                if answers is not None:
                    answers.append(status.get("Status"))
            threading.Timer(0.2, report).start()
        return 0x0000, None

    return ScriptedSCP(contexts=[(STORAGE_COMMITMENT, None, True, True)],
                       handlers=[(evt.EVT_N_ACTION, on_action)])


def test_report_on_the_same_association():
    with _commitment_scp(True) as scp:
        uid = generate_uid()
        outcome = request_commitment(parse_node_url(scp.url), LOCAL, [(SecondaryCaptureImageStorage, uid)], timeout=5)
    assert outcome.committed == {uid} and not outcome.unconfirmed


def test_a_report_is_answered_before_the_association_is_released(monkeypatch):
    """pynetdicom answers an N-EVENT-REPORT in a thread of its own. When that thread falls
    behind (a loaded machine), our A-RELEASE-RQ must still wait for its answer: sent after
    the release request, the answer is refused by the state machine and both sides hang."""
    deliver = PendingReport.deliver

    def deliver_then_lag(self, report):
        deliver(self, report)
        time.sleep(0.5)

    monkeypatch.setattr(PendingReport, "deliver", deliver_then_lag)
    answers: list = []
    with _commitment_scp(True, answers) as scp:
        uid = generate_uid()
        outcome = request_commitment(parse_node_url(scp.url), LOCAL, [(SecondaryCaptureImageStorage, uid)], timeout=5)
    assert outcome.committed == {uid}
    assert answers == [0x0000]


def test_no_report_within_timeout_is_not_confirmed():
    with _commitment_scp(False) as scp:
        uid = generate_uid()
        outcome = request_commitment(parse_node_url(scp.url), LOCAL, [(SecondaryCaptureImageStorage, uid)], timeout=0.5)
    assert outcome.unconfirmed == {uid} and not outcome.committed and not outcome.failed


def test_listener_answers_echo_from_configured_node_only():
    port = free_port()
    local = dataclasses.replace(LOCAL, port=port)
    config = parse_config({"destinations": {"pacs": {"ae_title": "PACS", "host": HOST, "port": 104},
                                            "far": {"ae_title": "FAR", "host": "127.0.0.2", "port": 104}}})
    us = parse_node_url(f"KIOSK@{HOST}:{port}")
    with Listener(local, config.destinations.values()):
        assert echo(us, dataclasses.replace(LOCAL, ae_title="PACS")).status == 0x0000
        for stranger in ("STRANGER", "FAR"):  # unknown title; known title from the wrong host
            with pytest.raises(NetworkError) as caught:
                echo(us, dataclasses.replace(LOCAL, ae_title=stranger))
            assert "rejected the association permanently: calling AE title not recognised" in caught.value.message
            assert not caught.value.transient


def test_listener_port_in_use_is_a_clear_error():
    port = free_port()
    local = dataclasses.replace(LOCAL, port=port)
    with Listener(local, []):
        with pytest.raises(NetworkError) as caught:
            Listener(local, []).start()
    assert f"cannot listen on port {port}" in caught.value.message


def test_commitment_shares_a_listener_already_running(orthanc, tmp_path):
    """The UI or outbox service may already listen on [local] port: commit_with_listener uses it."""
    from kiosk.net.commitment import commit_with_listener

    node = parse_node_url(orthanc.url)
    config = parse_config({"local": {"port": orthanc.extra["kiosk_port"]}})
    path = make_sc(tmp_path / "shared.dcm")
    [stored] = store_files(node, config.local, [path]).results
    with Listener(config.local, [node]) as running:
        assert Listener.running(config.local.port) is running
        outcome = commit_with_listener(node, config, [(stored.sop_class_uid, stored.sop_instance_uid)], timeout=10)
    assert outcome.committed == {stored.sop_instance_uid}
    assert Listener.running(config.local.port) is None


def _reporting_scp(listener_port: int, senders: list[tuple[str, str, bool]]):
    """A commitment SCP (PACS) that answers N-ACTION and then, as Orthanc does, sends the report on a new
    association to our listener, once per ``senders`` item: (calling AE title, source address, well-formed).
    Returns the SCP and the list the statuses of those reports go to."""
    import threading

    from pynetdicom import AE

    statuses: list[int] = []

    def send(info) -> None:  # noqa: ANN001
        for calling, source, good in senders:
            ds = Dataset()
            ds.TransactionUID = info.TransactionUID
            if good:
                ds.ReferencedSOPSequence = info.ReferencedSOPSequence
            else:
                item = Dataset()
                item.ReferencedSOPClassUID = SecondaryCaptureImageStorage  # no Referenced SOP Instance UID
                ds.ReferencedSOPSequence = [item]
            ae = AE(ae_title=calling)
            ae.add_requested_context(STORAGE_COMMITMENT)
            assoc = ae.associate(HOST, listener_port, ae_title="KIOSK", bind_address=(source, 0))
            assert assoc.is_established, f"{calling} from {source} could not associate"
            status, _ = assoc.send_n_event_report(ds, 1, STORAGE_COMMITMENT, "1.2.840.10008.1.20.1.1")
            statuses.append(int(status.Status))
            assoc.release()

    def on_action(event):
        threading.Timer(0.2, send, [event.action_information]).start()
        return 0x0000, None

    scp = ScriptedSCP(aet="PACS", contexts=[(STORAGE_COMMITMENT, None, True, True)],
                      handlers=[(evt.EVT_N_ACTION, on_action)])
    return scp, statuses


def _commit_reported_by(senders: list[tuple[str, str, bool]], timeout: float):
    """request_commitment to a PACS whose reports come from ``senders``, with our listener allowing the PACS,
    the worklist server (WLM, same host) and another PACS title on 127.0.0.2."""
    port = free_port()
    local = dataclasses.replace(LOCAL, port=port)
    scp, statuses = _reporting_scp(port, senders)
    with scp:
        pacs = parse_node_url(scp.url)
        others = [parse_node_url(f"WLM@{HOST}:104"), parse_node_url("PACS@127.0.0.2:104")]
        uid = generate_uid()
        with Listener(local, [pacs, *others]) as listener:
            outcome = request_commitment(pacs, local, [(SecondaryCaptureImageStorage, uid)], listener=listener,
                                         timeout=timeout)
    return uid, outcome, statuses


@pytest.mark.parametrize("calling, source", [("WLM", HOST), ("PACS", "127.0.0.2")],
                         ids=["another-configured-ae", "same-ae-other-host"])
def test_a_report_from_a_node_not_asked_commits_nothing(calling, source):
    uid, outcome, statuses = _commit_reported_by([(calling, source, True)], timeout=3)
    assert outcome.unconfirmed == {uid} and not outcome.committed
    assert statuses == [0x0110]  # processing failure: that node was not asked


def test_a_malformed_report_leaves_the_transaction_waiting_for_a_good_one():
    uid, outcome, statuses = _commit_reported_by([("PACS", HOST, False), ("PACS", HOST, True)], timeout=10)
    assert outcome.committed == {uid} and not outcome.unconfirmed
    assert statuses == [0x0110, 0x0000]


def test_a_report_longer_than_one_pdu_is_taken():
    """The listener reads no PDU longer than it agreed to, but a report spread over many is fine."""
    port = free_port()
    local = dataclasses.replace(LOCAL, port=port)
    scp, statuses = _reporting_scp(port, [("PACS", HOST, True)])
    uids = {generate_uid() for _ in range(2000)}  # ~200 KB of Event Information
    with scp:
        pacs = parse_node_url(scp.url)
        with Listener(local, [pacs]) as listener:
            outcome = request_commitment(pacs, local, [(SecondaryCaptureImageStorage, uid) for uid in uids],
                                         listener=listener, timeout=20)
    assert outcome.committed == uids and statuses == [0x0000]
