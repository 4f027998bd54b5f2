"""Touch UI state that follows the session: counts, progress bars, announcements, the empty preview,
Finish with unsent images, and Resume from the Outbox behind the patient confirmation."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np

from kiosk.study import StudyContext
from kiosk.ui.strings import T
from tests.ui.test_ui_admin import press_pin
from tests.ui.test_ui_flow import demo, open_source, scan_one_page, start_session_by_barcode  # noqa: F401 (fixture)

PRIMARY = (20, 102, 191)  # theme.kv's PRIMARY (0.08, 0.40, 0.75) in 8 bits: the progress fill


def texts(widget):
    """Every label text under ``widget``."""
    from kivy.uix.label import Label

    if isinstance(widget, Label):
        yield widget.text
    for child in widget.children:
        yield from texts(child)


def area(ui, widget, name):
    """The RGB pixels the window shows where ``widget`` is (from a screenshot named ``name``)."""
    from kivy.core.window import Window
    from PIL import Image

    pixels = np.asarray(Image.open(ui.screenshot(name)).convert("RGB"))
    scale = pixels.shape[1] / Window.width
    x, y = widget.to_window(widget.x, widget.y)
    left, right = int(round(x * scale)), int(round((x + widget.width) * scale))
    top, bottom = pixels.shape[0] - int(round((y + widget.height) * scale)), pixels.shape[0] - int(round(y * scale))
    return pixels[top + 1:bottom - 1, left + 1:right - 1]


def share_of(pixels, colour, tolerance=12):
    """The fraction of ``pixels`` within ``tolerance`` of ``colour``."""
    return float(np.all(np.abs(pixels.astype(int) - colour) <= tolerance, axis=-1).mean())


def scan_feeder(ui, code):
    """A session for ``code`` with the demo scanner's three feeder pages."""
    acquire = open_source(ui, code, "Demo scanner")
    acquire.ids.presets.text = "Document (feeder)"
    ui.tap(acquire.ids.scan)
    ui.wait(lambda: acquire.count == 3 and not acquire.busy, what="3 scanned pages")
    return acquire


def test_send_screen_counts_the_images_of_the_session(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    acquire = scan_feeder(ui, "A1003")
    assert T["items_in_session"].format(count=3) in texts(acquire)
    ui.tap(acquire.ids.review)
    review = ui.screen("review")
    ui.wait(lambda: len(review.ids.thumbs.children) == 3, what="3 thumbnails")
    ui.tap(review.ids.delete)
    ui.wait(lambda: not review.busy and len(review.ids.thumbs.children) == 2, what="2 thumbnails")
    ui.tap(review.ids.send)
    send = ui.screen("send")
    ui.pump(3)
    assert T["items_in_session"].format(count=2) in texts(send), list(texts(send))


def test_send_progress_bars_draw_their_fill(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    acquire = scan_one_page(ui, "A1001")
    ui.tap(acquire.ids.review)
    ui.tap(ui.screen("review").ids.send)
    send = ui.screen("send")
    ui.tap(send.ids.send)
    ui.wait(lambda: send.finished, timeout=60, what="the send result")
    for bar in (send.ids.current, send.ids.overall):
        assert bar.value == 1 and bar.height >= 18
        assert share_of(area(ui, bar, "send_bars"), PRIMARY) > 0.95, bar
    send.overall = 0.5  # half done: the left half is filled, the right half is the track
    bar = area(ui, send.ids.overall, "send_half")
    half = bar.shape[1] // 2
    assert share_of(bar[:, :half - 4], PRIMARY) > 0.95 and share_of(bar[:, half + 4:], PRIMARY) < 0.05


def test_camera_capture_is_announced_as_an_image_not_a_page(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    acquire = open_source(ui, "A1004", "Demo camera")
    ui.wait(lambda: acquire.live and acquire.frames_shown > 2, what="live preview frames")
    ui.tap(acquire.ids.scan)  # Capture
    ui.wait(lambda: acquire.count == 1 and not acquire.busy, what="a captured frame")
    assert acquire.status == T["captured"] and "page" not in acquire.status
    assert T["items_in_session"].format(count=1) in texts(acquire)


def test_the_orders_modality_offers_its_source_first_and_names_the_series_by_source(kiosk_ui, demo):
    """An endoscopy order (ES) starts on the camera and its frames are a "Video capture" series; the
    next order, for a document (DOC), starts on the scanner."""
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    ui.tap(start_session_by_barcode(ui, "A1005").ids.yes)  # Endoscopy video, ES
    acquire = ui.screen("acquire")
    ui.wait(lambda: acquire.selected is not None and acquire.live and acquire.frames_shown > 2,
            what="the camera, selected and live")
    assert acquire.selected.kind == "camera" and acquire.devices[0].kind == "camera"
    ui.tap(acquire.ids.scan)  # Capture
    ui.wait(lambda: acquire.count == 1 and not acquire.busy, what="a captured frame")
    ui.tap(acquire.ids.review)
    review = ui.screen("review")
    ui.wait(lambda: review.series, what="the series description")
    assert review.series == "Video capture"
    ui.app.end_session()
    ui.tap(start_session_by_barcode(ui, "A1001").ids.yes)  # Referral letter, DOC
    ui.wait(lambda: ui.app.manager.current == "acquire" and acquire.selected is not None, what="a source")
    assert acquire.selected.kind == "scanner" and not acquire.live


def test_the_empty_scanner_preview_says_what_to_do_first(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    acquire = open_source(ui, "A1002", "Demo scanner")
    ui.pump(3)
    assert acquire.ids.preview.texture is None
    shown = area(ui, acquire.ids.preview, "acquire_empty")
    assert share_of(shown, (255, 255, 255), tolerance=20) < 0.02  # no empty white rectangle
    assert acquire.ids.placeholder.text == T["preview_scanner"]
    ui.tap(acquire.ids.scan)
    ui.wait(lambda: acquire.count == 1 and not acquire.busy, what="a scanned page")
    ui.pump(3)
    assert acquire.ids.preview.texture is not None and acquire.ids.placeholder.text == ""
    assert share_of(area(ui, acquire.ids.preview, "acquire_page"), (255, 255, 255), tolerance=20) > 0.1


def finish_card(ui):
    """Tap Finish with unsent images: the session goes on until the user answers."""
    session = ui.app.session
    ui.tap(ui.app.root.ids.banner.ids.finish)
    ui.pump(3)
    assert ui.app.session is session, "Finish ended the session without asking"
    from kiosk.ui.widgets.finish import FinishCard

    return ui.wait(lambda: ui.modal(FinishCard), what="the Finish question")


def test_finish_with_unsent_images_asks_first(kiosk_ui, demo):
    from kiosk.ui.widgets.dialogs import MessageCard

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    scan_one_page(ui, "A1001")
    session = ui.app.session
    card = finish_card(ui)
    assert ui.app.session is session and card.count == 1 and not card.locked
    assert T["finish_title"].format(count=1) in texts(card) and not card.ids.discard.disabled
    ui.screenshot("finish")
    ui.tap(card.ids.back)  # nothing happens
    ui.wait(lambda: ui.modal() is None, what="the card to close")
    assert ui.app.session is session and ui.app.manager.current == "acquire"

    ui.tap(finish_card(ui).ids.send)  # Send now: the Send screen, same session
    # The card's closing animation can outlast the screen change on a busy machine.
    ui.wait(lambda: ui.app.manager.current == "send" and ui.modal() is None, what="the send screen, card closed")
    assert ui.app.session is session

    ui.tap(finish_card(ui).ids.keep)  # Keep for later: ended, kept for the Outbox
    ui.wait(lambda: ui.app.session is None and ui.app.manager.current == "patient", what="the session to end")
    message = ui.wait(lambda: ui.modal(MessageCard), what="the kept notice")
    assert message.body == T["finish_kept"].format(count=1)
    assert [s["folder"] for s in ui.app.store.summaries()] == [session.folder]


def test_finish_can_discard_unsent_images_with_the_pin(kiosk_ui, demo):
    from kiosk.ui.widgets.dialogs import MessageCard, PinPad

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    scan_one_page(ui, "A1005")
    session = ui.app.session
    ui.tap(finish_card(ui).ids.discard)
    pad = ui.wait(lambda: ui.modal(PinPad), what="the PIN pad")
    ui.tap(pad.ids.cancel)  # nothing is lost
    ui.wait(lambda: ui.modal() is None, what="the PIN pad to close")
    assert ui.app.session is session and session.folder.is_dir()

    ui.tap(finish_card(ui).ids.discard)
    press_pin(ui, ui.wait(lambda: ui.modal(PinPad), what="the PIN pad"), "1234")
    ui.wait(lambda: ui.app.session is None, what="the session to end")
    message = ui.wait(lambda: ui.modal(MessageCard), what="the discarded notice")
    assert message.body == T["finish_discarded"].format(count=1)
    assert ui.app.store.summaries() == [] and not session.folder.exists()


def test_finish_says_discarding_is_locked_without_a_pin(kiosk_ui, demo):
    peers, config = demo
    config = replace(config, ui=replace(config.ui, admin_pin=""))
    ui = kiosk_ui(config, demo=peers)
    scan_one_page(ui, "A1001")
    card = finish_card(ui)
    assert card.locked and card.ids.discard.disabled
    assert card.ids.locked.text == T["finish_locked"] and card.ids.locked.height > 0
    ui.screenshot("finish_locked")
    ui.app.end_session()  # what the idle timeout does while the question is open
    ui.wait(lambda: ui.modal() is None, what="the question to close with the session")
    assert len(ui.app.store.summaries()) == 1


def test_resume_from_the_outbox_confirms_the_patient_first(kiosk_ui, demo):
    from kiosk.ui.widgets.dialogs import ConfirmCard

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    scan_one_page(ui, "A1001")
    ui.app.end_session()  # kept: DEMO001's unsent page
    ui.tap(start_session_by_barcode(ui, "A1002").ids.yes)
    ui.wait(lambda: ui.app.manager.current == "acquire", what="DEMO002's session")
    current = ui.app.session
    ui.tap(ui.app.root.ids.banner.ids.outbox)
    outbox = ui.screen("outbox")
    row = ui.wait(lambda: outbox.ids.kept.children and outbox.ids.kept.children[0], what="the kept session")
    ui.tap(row.ids.resume)
    card = ui.wait(lambda: ui.modal(ConfirmCard), what="the confirmation card")
    values = " ".join(c.text for c in card.ids.rows.children)
    assert card.title == T["confirm_title"] and "DEMO001" in values and "MÜLLER" in values
    assert ui.app.session is current and "DEMO002" in ui.app.root.ids.banner.ids.patient.text
    ui.screenshot("resume")
    ui.tap(card.ids.no)  # not this patient: nothing changes
    ui.wait(lambda: ui.modal() is None, what="the card to close")
    assert ui.app.session is current and ui.app.manager.current == "outbox"

    ui.tap(row.ids.resume)
    ui.tap(ui.wait(lambda: ui.modal(ConfirmCard), what="the confirmation card").ids.yes)
    ui.wait(lambda: ui.app.manager.current == "review", what="the review screen")
    assert ui.app.session.context.patient_id == "DEMO001" and len(ui.app.session) == 1
    assert "DEMO001" in ui.app.root.ids.banner.ids.patient.text


def test_screens_follow_changes_made_to_the_session_elsewhere(kiosk_ui, demo):
    """The station may add captures itself (a scan started from the CLI, an import): every screen
    shows the count of the session object the app holds, not one taken when the screen opened."""
    from kiosk.capture import Capture, SourceKind

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    ui.app.start_session(StudyContext(patient_name="STATE^TEST", patient_id="S1"))
    acquire = ui.screen("acquire")
    ui.pump(3)
    assert T["items_in_session"].format(count=0) in texts(acquire) and acquire.ids.review.disabled
    page = Capture(kind=SourceKind.SCANNED_DOCUMENT, pixels=np.full((40, 30, 3), 128, np.uint8), dpi=100)
    worker = threading.Thread(target=lambda: ui.app.session.add(page))  # not on the UI thread
    worker.start()
    worker.join()
    ui.wait(lambda: T["items_in_session"].format(count=1) in texts(acquire), what="the new count")
    assert not acquire.ids.review.disabled and acquire.count == 1
    ui.app.go("send")
    ui.pump(3)
    assert T["items_in_session"].format(count=1) in texts(ui.screen("send"))
    review = ui.screen("review")
    ui.app.go("review")
    ui.wait(lambda: len(review.ids.thumbs.children) == 1, what="the review thumbnails")
    worker = threading.Thread(target=lambda: ui.app.session.add(page))  # a capture added while Review is shown
    worker.start()
    worker.join()
    ui.wait(lambda: len(review.ids.thumbs.children) == 2, what="the added capture among the thumbnails")
    assert T["item_of"].format(index=1, count=2) in review.status
