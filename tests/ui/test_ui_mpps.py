"""The touch UI reports each session to the RIS as a performed procedure step (strict MPPS SCP):
Finish without sending and the idle timeout discontinue it, Send completes it."""

from __future__ import annotations

from dataclasses import replace

import pydicom
import pytest

from kiosk.config import NodeConfig
from tests.support.mpps_scp import start_mpps_scp
from tests.ui.test_ui_flow import demo, scan_one_page, send_one_page  # noqa: F401 (fixture)


@pytest.fixture
def scp():
    peer = start_mpps_scp()
    yield peer
    peer.stop()


def reason_of(message) -> str:
    [code] = message.dataset.PerformedProcedureStepDiscontinuationReasonCodeSequence
    return f"{code.CodingSchemeDesignator} {code.CodeValue}"


def test_finish_without_sending_and_idling_discontinue_the_step_and_send_completes_it(kiosk_ui, demo, scp):
    peers, config = demo
    config = replace(config, mpps=NodeConfig(name="ris", ae_title=scp.aet, host="127.0.0.1", port=scp.port))
    ui = kiosk_ui(config, demo=peers)

    scan_one_page(ui, "A1001")
    ui.wait(lambda: len(scp.messages) == 1, what="the N-CREATE at the first scan")
    assert scp.messages[0].dataset.ScheduledStepAttributesSequence[0].AccessionNumber == "A1001"
    ui.app.end_session()  # Finish, images kept for later
    ui.wait(lambda: len(scp.messages) == 2, what="the N-SET of the finished session")
    assert scp.messages[1].dataset.PerformedProcedureStepStatus == "DISCONTINUED"
    assert reason_of(scp.messages[1]) == "DCM 110513"

    scan_one_page(ui, "A1002")
    ui.app.ui = replace(ui.app.ui, idle_timeout=1)
    ui.wait(lambda: ui.app.session is None, timeout=10, what="the idle timeout")
    ui.app.ui = replace(ui.app.ui, idle_timeout=300)
    ui.wait(lambda: len(scp.messages) == 4, what="the N-SET of the idle session")
    while ui.modal() is not None:  # the card saying the session ended
        ui.modal().dismiss()
        ui.pump(2)
    assert [m.dataset.get("PerformedProcedureStepStatus") for m in scp.messages[2:]] == ["IN PROGRESS", "DISCONTINUED"]

    send = send_one_page(ui, "A1003")
    ui.tap(send.ids.send)
    ui.wait(lambda: send.finished, timeout=60, what="the send result")
    ui.wait(lambda: len(scp.messages) == 6, what="the N-SET of the sent session")
    completed = scp.messages[5].dataset
    assert completed.PerformedProcedureStepStatus == "COMPLETED"
    [series] = completed.PerformedSeriesSequence
    [image] = series.ReferencedImageSequence
    [stored] = [pydicom.dcmread(p) for p in peers.received.glob("*.dcm")]
    assert (image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID) == (stored.SOPClassUID, stored.SOPInstanceUID)
    assert series.SeriesInstanceUID == stored.SeriesInstanceUID and series.SeriesDescription == stored.SeriesDescription
    assert [m.status for m in scp.messages] == [0] * 6
    assert len({m.uid for m in scp.messages}) == 3  # three steps, one per session


def test_the_outbox_screen_shows_step_messages_the_ris_has_not_taken(kiosk_ui, demo):
    from tests.support.peers import free_port

    peers, config = demo
    config = replace(config, mpps=NodeConfig(name="ris", ae_title="RIS", host="127.0.0.1", port=free_port()))
    ui = kiosk_ui(config, demo=peers)
    scan_one_page(ui, "A1001")  # the N-CREATE is queued; no RIS answers on that port
    ui.tap(ui.app.root.ids.banner.ids.outbox)
    outbox = ui.screen("outbox")
    row = ui.wait(lambda: next((r for r in outbox.ids.jobs.children if "MPPS N-CREATE IN PROGRESS" in r.text), None),
                  what="the MPPS row")
    assert "ris" in row.text
