"""MPPS (IHE RAD-6/RAD-7) against a strict SCP: the step IN PROGRESS, then COMPLETED with exactly its
instances or DISCONTINUED with a reason; unscheduled steps; messages queued durably, in order, once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pydicom
import pytest

from kiosk.capture import Capture, SourceKind
from kiosk.cli import main
from kiosk.config import NodeConfig, parse_config, to_toml
from kiosk.dicomize import BuildOptions
from kiosk.mpps import track
from kiosk.outbox import Outbox
from kiosk.station import FolderOutput, Station
from kiosk.study import StudyContext
from tests.support.mpps_scp import start_mpps_scp
from tests.support.outbox_helpers import deliver, outbox_config
from tests.support.paths import ROOT
from tests.support.peers import free_port, start_storescp
from tests.support.worklist_data import appendix_a_item


@pytest.fixture
def scp():
    from tests.support.netns import need_isolation

    need_isolation()
    peer = start_mpps_scp()
    yield peer
    peer.stop()


def with_mpps(config, port: int):
    return replace(config, mpps=NodeConfig(name="mpps", ae_title="RIS", host="127.0.0.1", port=port))


def folder(tmp_path) -> FolderOutput:
    (tmp_path / "out").mkdir(exist_ok=True)
    return FolderOutput(tmp_path / "out")


def tracked(tmp_path, outbox: Outbox, config, name: str, patient_id: str):
    """A streaming station (writing to ``tmp_path/out``) for a typed patient, with its MPPS tracker."""
    station = Station.stream(StudyContext.manual(patient_name=name, patient_id=patient_id), BuildOptions(),
                             [folder(tmp_path)])
    return station, track(station, outbox, config)


def page(value: int) -> Capture:
    return Capture(SourceKind.SCANNED_DOCUMENT, pixels=np.full((40, 30), value, np.uint8), dpi=300.0)


def wait_until(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_kiosk_acquire_reports_the_step_in_progress_then_completed_with_exactly_its_instances(tmp_path, scp, capsys):
    from kiosk.audit import trail

    started = time.time()
    storescp = start_storescp(tmp_path / "storescp")
    try:
        config = with_mpps(outbox_config(tmp_path, {"pacs": {"ae_title": storescp.aet, "host": "127.0.0.1",
                                                             "port": storescp.port}}), scp.port)
        (tmp_path / "kiosk.toml").write_text(to_toml(config))
        item = appendix_a_item()
        (tmp_path / "item.json").write_text(json.dumps(item.to_json_dict()), encoding="utf-8")
        code = main(["--config", str(tmp_path / "kiosk.toml"), "acquire", "--source", "demo:scanner?pages=3",
                     "--adf", "--mode", "gray", "--dpi", "40", "--worklist-item", str(tmp_path / "item.json"),
                     "--send", "pacs", "--wait"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "MPPS: N-CREATE IN PROGRESS, N-SET COMPLETED sent to mpps" in out
        received = [pydicom.dcmread(p) for p in sorted((tmp_path / "storescp" / "received").iterdir())]
    finally:
        storescp.stop()
    assert [(m.action, m.status) for m in scp.messages] == [("N-CREATE", 0), ("N-SET", 0)]
    create, completed = scp.messages[0].dataset, scp.messages[1].dataset
    scheduled = create.ScheduledStepAttributesSequence[0]
    step = item.ScheduledProcedureStepSequence[0]
    assert scheduled.ScheduledProcedureStepID == step.ScheduledProcedureStepID
    assert scheduled.AccessionNumber == item.AccessionNumber and scheduled.StudyInstanceUID == item.StudyInstanceUID
    assert scheduled.ScheduledProtocolCodeSequence[0].CodeValue == "P-ENDO-1"
    assert create.ProcedureCodeSequence[0].CodeValue == "GAS01" and create.Modality == "ES"
    assert str(create.PatientName) == str(item.PatientName) and create.PerformedStationAETitle == "KIOSK"
    assert len(received) == 3
    for ds in received:  # the objects say which step made them, as the MPPS does
        assert ds.PerformedProcedureStepID == create.PerformedProcedureStepID
        assert (ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime) == \
            (create.PerformedProcedureStepStartDate, create.PerformedProcedureStepStartTime)
    assert completed.PerformedProcedureStepStatus == "COMPLETED"
    [series] = completed.PerformedSeriesSequence
    assert series.SeriesInstanceUID == received[0].SeriesInstanceUID
    assert {(r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID) for r in series.ReferencedImageSequence} == \
        {(ds.SOPClassUID, ds.SOPInstanceUID) for ds in received}
    assert scp.steps[scp.messages[0].uid].PerformedProcedureStepStatus == "COMPLETED"
    # The audit trail: the step created and updated, the order used, the instances sent.
    audited = [(e.event, e.outcome) for e in trail.queue().entries(started)]
    assert audited.count(("Procedure Record", 0)) == 2 and audited.count(("Order Record", 0)) == 1
    assert ("DICOM Instances Transferred", 0) in audited


def test_an_unscheduled_session_is_a_step_with_empty_scheduled_keys_and_the_forms_patient(tmp_path, scp):
    config = with_mpps(outbox_config(tmp_path), scp.port)
    outbox = Outbox.from_config(config)
    try:
        station, _ = tracked(tmp_path, outbox, config, "WALKIN^WANDA", "W-1")
        station.add(page(1))
        station.finish()
        deliver(outbox, config, lambda: len(scp.messages) == 2)
    finally:
        outbox.close()
    assert [(m.action, m.status) for m in scp.messages] == [("N-CREATE", 0), ("N-SET", 0)]
    create = scp.messages[0].dataset
    scheduled = create.ScheduledStepAttributesSequence[0]
    for keyword in ("AccessionNumber", "RequestedProcedureID", "ScheduledProcedureStepID"):
        assert keyword in scheduled and scheduled[keyword].value in ("", None)
    [written] = [pydicom.dcmread(p) for p in (tmp_path / "out").iterdir()]
    assert scheduled.StudyInstanceUID == written.StudyInstanceUID  # a new study, the same in both
    assert str(create.PatientName) == "WALKIN^WANDA" and create.PatientID == "W-1"


def test_the_mpps_node_down_then_up_gets_each_message_once_and_in_order(tmp_path):
    from tests.support.netns import need_isolation

    need_isolation()
    port = free_port()
    config = with_mpps(outbox_config(tmp_path), port)
    outbox = Outbox.from_config(config)
    scp = None
    try:
        station, _ = tracked(tmp_path, outbox, config, "DOWN^THEN UP", "D-1")
        station.add(page(1))
        station.add(page(2))
        station.finish()
        deliver(outbox, config, lambda: any(m.attempts for m in outbox.steps.messages()), timeout=30)
        [create, completed] = outbox.steps.messages()
        assert create.state == "retrying" and "retry 1 of" in create.reason and completed.state == "queued"
        scp = start_mpps_scp(port)
        deliver(outbox, config, lambda: all(m.state == "sent" for m in outbox.steps.messages()), timeout=30)
    finally:
        outbox.close()
        if scp is not None:
            scp.stop()
    assert [(m.action, m.status) for m in scp.messages] == [("N-CREATE", 0), ("N-SET", 0)]
    assert len(scp.messages[1].dataset.PerformedSeriesSequence[0].ReferencedImageSequence) == 2


def test_a_refused_message_fails_with_its_status_and_is_not_retried(tmp_path, scp, capsys):
    config = with_mpps(outbox_config(tmp_path), scp.port)
    outbox = Outbox.from_config(config)
    try:
        station, tracker = tracked(tmp_path, outbox, config, "TWICE^ENDED", "T-1")
        station.add(page(1))
        station.finish()
        tracker._end("DISCONTINUED")  # a second final N-SET for a step the RIS already closed
        deliver(outbox, config, lambda: all(m.state in ("sent", "failed") for m in outbox.steps.messages()))
        messages = outbox.steps.messages()
    finally:
        outbox.close()
    assert [m.state for m in messages] == ["sent", "sent", "failed"]
    assert messages[2].status == 0xC310 and "no longer IN PROGRESS" in messages[2].reason
    assert [m.status for m in scp.messages] == [0, 0, 0xC310]  # tried once, not again
    (tmp_path / "kiosk.toml").write_text(to_toml(config))
    assert main(["--config", str(tmp_path / "kiosk.toml"), "outbox", "list"]) == 0
    listing = capsys.readouterr().out
    assert "N-SET DISCONTINUED" in listing and "failed" in listing and "C310" in listing


def test_a_killed_delivery_service_sends_the_n_set_after_its_restart_and_the_n_create_once(tmp_path, scp):
    config = with_mpps(outbox_config(tmp_path), scp.port)
    config = replace(config, local=replace(config.local, port=free_port()))  # the service's listener
    config_path = tmp_path / "kiosk.toml"
    config_path.write_text(to_toml(config))
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_STATE_HOME": str(tmp_path / "state")}

    def service() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "kiosk", "--config", str(config_path), "outbox", "run"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    outbox = Outbox.from_config(parse_config({"outbox": {"spool_dir": config.outbox.spool_dir}}))
    first = service()
    second = None
    try:
        station, _ = tracked(tmp_path, outbox, config, "KILL^NINE", "K-9")
        station.add(page(1))
        wait_until(lambda: len(scp.messages) == 1 and outbox.steps.messages()[0].state == "sent",
                   what="the N-CREATE at the RIS, recorded as sent")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        station.finish()  # the N-SET is queued while no delivery runs
        time.sleep(0.5)
        assert len(scp.messages) == 1
        second = service()
        wait_until(lambda: len(scp.messages) == 2, what="the N-SET after the restart")
        time.sleep(1.0)  # nothing more arrives
    finally:
        outbox.close()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    assert [(m.action, m.status) for m in scp.messages] == [("N-CREATE", 0), ("N-SET", 0)]


def test_an_n_create_resent_after_a_crash_before_its_answer_was_recorded_counts_as_sent(tmp_path, scp):
    """Killed after the RIS took the N-CREATE but before the outbox recorded it: sent again, the RIS
    says "duplicate SOP instance" (0x0111) for our own UID, and the step goes on."""
    config = with_mpps(outbox_config(tmp_path), scp.port)
    outbox = Outbox.from_config(config)
    try:
        station, _ = tracked(tmp_path, outbox, config, "CRASH^WINDOW", "C-1")
        deliver(outbox, config, lambda: outbox.steps.messages()[0].state == "sent")
        create = outbox.steps.messages()[0]
        outbox.steps.update(create.id, "queued")  # what a crash before the update leaves
        station.add(page(1))
        station.finish()
        deliver(outbox, config, lambda: all(m.state == "sent" for m in outbox.steps.messages()))
        messages = outbox.steps.messages()
    finally:
        outbox.close()
    assert [(m.action, m.status) for m in scp.messages] == [("N-CREATE", 0), ("N-CREATE", 0x0111), ("N-SET", 0)]
    assert "had it already" in messages[0].reason and messages[1].state == "sent"
