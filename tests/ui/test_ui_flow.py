"""The touch UI driven like a user, against the embedded demo peers and demo devices."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from kiosk.ui.strings import T


@pytest.fixture
def demo(tmp_path):
    from kiosk.cli.demo import start

    peers, config = start(tmp_path / "demo")
    yield peers, config
    peers.stop()


def test_patient_screen_lists_todays_worklist(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    screen = ui.screen("patient")
    ui.wait(lambda: len(screen.ids.rows.children) == 5, what="5 worklist rows")
    assert "MÜLLER, JÜRGEN" in " ".join(r.text for r in screen.ids.rows.children)
    ui.screenshot("patient")


def tap_text(ui, parent, needle):
    """Tap the first child of ``parent`` whose text contains ``needle``."""
    for child in reversed(parent.children):
        if needle in child.text:
            ui.tap(child)
            return child
    raise AssertionError(f"nothing with {needle!r} in {[c.text for c in parent.children]}")


def test_whole_flow_pick_scan_rotate_send(kiosk_ui, demo, dciodvfy):
    from pydicom import dcmread

    from kiosk.ui.widgets.dialogs import ConfirmCard

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    patient = ui.screen("patient")
    ui.wait(lambda: len(patient.ids.rows.children) == 5, what="worklist rows")
    tap_text(ui, patient.ids.rows, "ΠΑΠΑΔΟΠΟΥΛΟΣ")
    card = ui.wait(lambda: ui.modal(ConfirmCard), what="the confirmation card")
    assert "DEMO003" in " ".join(c.text for c in card.ids.rows.children)
    ui.screenshot("confirm")
    assert ui.app.session is None  # nothing starts before the confirmation
    ui.tap(card.ids.yes)
    ui.wait(lambda: ui.app.manager.current == "acquire", what="the acquire screen")
    assert "DEMO003" in ui.app.root.ids.banner.ids.patient.text

    acquire = ui.screen("acquire")
    ui.wait(lambda: any("Demo scanner" in t.text for t in acquire.ids.tiles.children),
            what="the demo scanner's tile")  # the demo CD's tile may come first
    tap_text(ui, acquire.ids.tiles, "Demo scanner")
    acquire.ids.presets.text = "Document (feeder)"
    ui.tap(acquire.ids.scan)
    ui.wait(lambda: acquire.count == 3 and not acquire.busy, what="3 scanned pages")
    assert len(list(ui.app.session.folder.glob("*.npy"))) == 3  # on disk at once
    ui.screenshot("acquire")

    ui.tap(acquire.ids.review)
    review = ui.screen("review")
    ui.wait(lambda: len(review.ids.thumbs.children) == 3, what="3 thumbnails")
    before = ui.app.session.captures[0].pixels.shape
    ui.tap(review.ids.rotate)
    ui.wait(lambda: not review.busy and ui.app.session.captures[0].pixels.shape == before[::-1],
            what="the rotated page")
    ui.wait(lambda: review.ids.large.texture.width > review.ids.large.texture.height, what="the rotated view")
    ui.screenshot("review")

    ui.tap(review.ids.send)
    send = ui.screen("send")
    ui.tap(send.ids.send)
    ui.wait(lambda: send.finished, timeout=60, what="the send result")
    ui.screenshot("send")
    assert send.result == T["send_result_commit"].format(done=3, total=3, destination="demo-pacs")
    files = sorted(peers.received.glob("*.dcm"))
    assert len(files) == 3
    datasets = [dcmread(f) for f in files]
    assert {str(d.PatientID) for d in datasets} == {"DEMO003"}
    assert {str(d.AccessionNumber) for d in datasets} == {"A1003"}
    worklist_uid = next(i.StudyInstanceUID for i in peers.items if i.PatientID == "DEMO003")
    assert {str(d.StudyInstanceUID) for d in datasets} == {worklist_uid}
    assert sorted((d.Rows, d.Columns) for d in datasets)[0][0] < sorted((d.Rows, d.Columns) for d in datasets)[0][1]
    dciodvfy(files[0])

    ui.tap(send.ids.next)
    ui.wait(lambda: ui.app.manager.current == "patient", what="back to the patient screen")
    assert ui.app.session is None and ui.app.store.kept() == []


def start_session_by_barcode(ui, code, rows=5):
    """Type a code into the search box like a keyboard-wedge scanner (ending with Enter) and confirm."""
    from kiosk.ui.widgets.dialogs import ConfirmCard

    patient = ui.screen("patient")
    ui.wait(lambda: len(patient.ids.rows.children) == rows, what=f"{rows} worklist rows")
    ui.type(code, enter=True)  # no field focused: what a keyboard-wedge scanner does
    card = ui.wait(lambda: ui.modal(ConfirmCard), what="the confirmation card")
    return card


def open_source(ui, code, source):
    """Start a session for ``code`` and pick the source tile named ``source``; returns the Acquire screen."""
    ui.tap(start_session_by_barcode(ui, code).ids.yes)
    acquire = ui.screen("acquire")
    # The demo's CD tile may come before the devices are found: wait for the one asked for.
    ui.wait(lambda: any(source in tile.text for tile in acquire.ids.tiles.children), what=f"the {source} tile")
    tap_text(ui, acquire.ids.tiles, source)
    return acquire


def scan_one_page(ui, code):
    """Start a session for ``code``, scan one page from the demo scanner; returns the Acquire screen."""
    acquire = open_source(ui, code, "Demo scanner")
    ui.tap(acquire.ids.scan)
    ui.wait(lambda: acquire.count == 1 and not acquire.busy, what="a scanned page")
    return acquire


def send_one_page(ui, code):
    """Scan one page for ``code`` and go through Review to the Send screen; returns the Send screen."""
    acquire = scan_one_page(ui, code)
    ui.tap(acquire.ids.review)
    review = ui.screen("review")
    ui.wait(lambda: len(review.ids.thumbs.children) == 1, what="the thumbnail")
    ui.tap(review.ids.send)
    return ui.screen("send")


def test_barcode_selects_the_matching_item(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    patient = ui.screen("patient")
    card = start_session_by_barcode(ui, "A1004")
    assert len(patient.ids.rows.children) == 1  # the list filters while typing
    assert patient.ids.search.text == "A1004" and not patient.ids.search.focus
    values = " ".join(c.text for c in card.ids.rows.children)
    assert "DEMO004" in values and "NEILL" in values and "DEMO003" not in values
    ui.tap(card.ids.no)
    assert ui.app.session is None


def test_idle_timeout_clears_the_patient(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    acquire = scan_one_page(ui, "A1001")
    folder = ui.app.session.folder
    ui.app.ui = replace(ui.app.ui, idle_timeout=1)
    # A scan still running is not idleness, however long it takes.
    acquire.busy = True
    until = time.monotonic() + 2.5
    ui.wait(lambda: ui.app.session is None or time.monotonic() >= until, what="2.5 s")
    assert ui.app.session is not None
    acquire.busy = False
    ui.wait(lambda: ui.app.session is None, timeout=10, what="the idle timeout")
    assert ui.app.manager.current == "patient"
    assert ui.app.root.ids.banner.ids.patient.text == T["no_patient"]
    ui.screenshot("idle")
    # No previous-patient data anywhere on screen: walk every label of every screen.
    from kivy.uix.label import Label

    def texts(widget):
        if isinstance(widget, Label):
            yield widget.text
        for child in widget.children:
            yield from texts(child)

    visible = " ".join(texts(ui.app.root)) + " ".join(t for s in ui.app.manager.screens for t in texts(s))
    assert "DEMO001" not in visible.replace(patient_rows(ui), "")
    assert acquire.ids.preview.texture is None and acquire.count == 0
    # The unsent page is kept (not sent, not lost) for the Outbox screen.
    assert [s["folder"] for s in ui.app.store.summaries()] == [folder]


def patient_rows(ui):
    """The worklist itself legitimately lists every patient: leave it out of the check."""
    return " ".join(r.text for r in ui.screen("patient").ids.rows.children)


def test_failed_send_says_why_and_keeps_images_in_outbox(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    acquire = scan_one_page(ui, "A1002")
    peers.stop()  # the PACS goes down
    ui.tap(acquire.ids.review)
    ui.tap(ui.screen("review").ids.send)
    send = ui.screen("send")
    ui.tap(send.ids.send)
    ui.wait(lambda: send.finished, timeout=60, what="the send result")
    ui.screenshot("send_failed")
    assert send.result.startswith("Not sent to demo-pacs: ")
    assert "Outbox" in send.result
    jobs = ui.app.services.outbox_jobs()
    assert [j.state for j in jobs] == ["retrying"]
    ui.tap(ui.app.root.ids.banner.ids.outbox)
    outbox = ui.screen("outbox")
    ui.wait(lambda: f"{T['state_retrying']}: 1" in outbox.summary, what="the outbox summary")
    ui.screenshot("outbox")
