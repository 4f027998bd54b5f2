"""The Inbox on the touch UI: a held print job -> badge -> Inbox -> Assign -> patient -> Review -> Send ->
the demo PACS has it as Encapsulated PDF under that patient -> the document is released."""

from __future__ import annotations

import pytest
from PIL import Image

from kiosk.ui.strings import T
from tests.ui.test_ui_admin import press_pin
from tests.ui.test_ui_flow import tap_text


@pytest.fixture
def demo(tmp_path, monkeypatch):
    from kiosk.cli.demo import start

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # an Inbox of this test's own
    peers, config = start(tmp_path / "demo")
    yield peers, config
    peers.stop()


def held_print_job(config, tmp_path):
    """A print job held for a person, put in the store through its API."""
    from kiosk.inbox.store import Inbox

    pdf = tmp_path / "referral.pdf"
    Image.new("RGB", (620, 877), "white").save(pdf, resolution=75)
    item = Inbox(config).hold(pdf, source="print", name="Referral K000123", reason="no rule matched",
                              user="alice", host="ward-pc")
    return item, pdf.read_bytes()


def test_a_printed_document_is_assigned_reviewed_and_sent(kiosk_ui, demo, tmp_path):
    from pydicom import dcmread
    from pydicom.uid import EncapsulatedPDFStorage

    from kiosk.inbox.store import Inbox
    from kiosk.ui.widgets.dialogs import ConfirmCard

    peers, config = demo
    item, pdf = held_print_job(config, tmp_path)
    ui = kiosk_ui(config, demo=peers)
    patient = ui.screen("patient")
    ui.wait(lambda: len(patient.ids.rows.children) == 5, what="worklist rows")
    ui.wait(lambda: patient.ids.inbox.opacity == 1, what="the Inbox button")
    assert patient.ids.inbox.text == T["inbox_button"].format(count=1)
    assert patient.ids.assign_banner.height == 0  # no document waits for a patient yet

    ui.tap(patient.ids.inbox)
    inbox = ui.screen("inbox")
    ui.wait(lambda: ui.app.manager.current == "inbox" and len(inbox.ids.rows.children) == 1, what="the Inbox row")
    row = inbox.ids.rows.children[0]
    assert "Referral K000123" in row.text and "alice@ward-pc" in row.text and "no rule matched" in row.text
    ui.screenshot("inbox")

    ui.tap(row.ids.assign)
    ui.wait(lambda: ui.app.manager.current == "patient" and patient.ids.assign_banner.opacity == 1,
            what="the patient screen with the banner")
    assert "Referral K000123" in patient.ids.assign_text.text
    ui.wait(lambda: not patient.loading and len(patient.ids.rows.children) == 5, what="the worklist again")
    ui.screenshot("inbox_choose_patient")

    tap_text(ui, patient.ids.rows, "ΠΑΠΑΔΟΠΟΥΛΟΣ")
    card = ui.wait(lambda: ui.modal(ConfirmCard), what="the confirmation card")
    ui.tap(card.ids.yes)
    ui.wait(lambda: ui.app.manager.current == "review" and ui.app.image_count == 1, what="Review with the document")
    assert "DEMO003" in ui.app.root.ids.banner.ids.patient.text
    assert ui.app.inbox.pending is None and patient.ids.assign_banner.height == 0
    review = ui.screen("review")
    ui.wait(lambda: len(review.ids.thumbs.children) == 1, what="the document's tile")
    assert Inbox(config).get(item.id) is not None  # held until its objects are in the outbox

    ui.tap(review.ids.send)
    send = ui.screen("send")
    ui.tap(send.ids.send)
    ui.wait(lambda: send.finished, timeout=30, what="the send result")
    (received,) = sorted(peers.received.glob("*.dcm"))
    ds = dcmread(received)
    assert ds.SOPClassUID == EncapsulatedPDFStorage
    assert str(ds.PatientID) == "DEMO003"
    assert bytes(ds.EncapsulatedDocument).rstrip(b"\0") == pdf.rstrip(b"\0")
    ui.wait(lambda: Inbox(config).held() == [] and ui.app.inbox.count == 0, timeout=10, what="the document released")

    ui.tap(send.ids.next)
    ui.wait(lambda: ui.app.manager.current == "patient", what="back to the patient screen")
    assert patient.ids.inbox.opacity == 0


def test_an_abandoned_session_leaves_the_document_held_and_delete_needs_the_pin(kiosk_ui, demo, tmp_path):
    from dataclasses import replace

    from kiosk.inbox.store import Inbox
    from kiosk.ui.widgets.dialogs import ConfirmCard, PinPad

    peers, config = demo
    config = replace(config, ui=replace(config.ui, admin_pin="2468"))
    item, _pdf = held_print_job(config, tmp_path)
    ui = kiosk_ui(config, demo=peers)
    patient = ui.screen("patient")
    ui.wait(lambda: patient.ids.inbox.opacity == 1 and len(patient.ids.rows.children) == 5, what="the Inbox button")
    ui.tap(patient.ids.inbox)
    inbox = ui.screen("inbox")
    ui.wait(lambda: len(inbox.ids.rows.children) == 1, what="the Inbox row")
    ui.tap(inbox.ids.rows.children[0].ids.assign)
    ui.wait(lambda: patient.ids.assign_banner.opacity == 1 and not patient.loading
            and len(patient.ids.rows.children) == 5, what="the banner and the worklist")
    tap_text(ui, patient.ids.rows, "ΠΑΠΑΔΟΠΟΥΛΟΣ")
    ui.tap(ui.wait(lambda: ui.modal(ConfirmCard), what="the confirmation card").ids.yes)
    ui.wait(lambda: ui.app.image_count == 1, what="the document in the session")
    ui.app.end_session()  # Finish without sending
    ui.wait(lambda: ui.app.manager.current == "patient", what="the patient screen")
    assert [i.id for i in Inbox(config).held()] == [item.id]
    ui.wait(lambda: patient.ids.inbox.opacity == 1, what="the badge still there")

    ui.tap(patient.ids.inbox)
    ui.wait(lambda: len(inbox.ids.rows.children) == 1, what="the Inbox row")
    ui.tap(inbox.ids.rows.children[0].ids.delete)
    press_pin(ui, ui.wait(lambda: ui.modal(PinPad), what="the PIN pad"), "2468")
    question = ui.wait(lambda: ui.modal(ConfirmCard), what="the delete question")
    assert [i.id for i in Inbox(config).held()] == [item.id]  # nothing goes before the answer
    ui.tap(question.ids.yes)
    ui.wait(lambda: Inbox(config).held() == [] and not inbox.ids.rows.children, what="the document deleted")
