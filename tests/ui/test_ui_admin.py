"""Touch UI: the admin PIN, Settings (echo, validation, saving), the live camera, kept sessions."""

from __future__ import annotations

import time
import tomllib

from kiosk.ui.strings import T
from tests.ui.test_ui_flow import demo, open_source, scan_one_page  # noqa: F401 (fixture)


def press_pin(ui, pad, digits):
    keys = {k.text: k for k in pad.ids.digits.children}
    for digit in digits:
        ui.tap(keys[digit])
    ui.tap(keys[T["ok"]])


def test_settings_need_the_pin_then_echo_validate_and_save(kiosk_ui, demo):
    from kiosk.ui.widgets.dialogs import PinPad

    from kiosk.audit import trail

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    ui.tap(ui.app.root.ids.banner.ids.settings)
    pad = ui.wait(lambda: ui.modal(PinPad), what="the PIN pad")
    typed = time.time()
    press_pin(ui, pad, "9999")
    assert pad.error == T["pin_wrong"] and ui.app.manager.current == "patient"
    # A wrong admin PIN is a refused User Authentication of the administrator; the digits are not kept.
    [refused] = [e for e in trail.queue().entries(typed) if e.event == "User Authentication"]
    assert refused.outcome == 4 and b"wrong admin PIN" in refused.frame and b"9999" not in refused.frame
    ui.screenshot("pin")
    press_pin(ui, pad, "1234")
    ui.wait(lambda: ui.app.manager.current == "settings", what="the settings screen")
    settings = ui.screen("settings")

    echo_rows = [w for w in settings.ids.form.children if hasattr(w, "result")]
    for row in echo_rows:
        ui.tap(row.ids.go)
    ui.wait(lambda: all(r.result.startswith("OK") for r in echo_rows), what="echo results")
    ui.screenshot("settings")

    settings.fields["local.port"].ids.input.text = "99999"
    settings.fields["ui.idle_timeout"].ids.input.text = "soon"
    ui.tap(settings.ids.save)
    assert "local.port" in settings.status and "ui.idle_timeout" in settings.status
    saved = tomllib.loads(config.path.read_text())
    assert saved["ui"]["idle_timeout"] == 300  # nothing written while anything is wrong

    started = time.time()
    settings.fields["local.port"].ids.input.text = "11113"
    settings.fields["ui.idle_timeout"].ids.input.text = "120"
    settings.fields["local.institution_name"].ids.input.text = "Clinique Saint-Éloi"
    ui.tap(settings.ids.save)
    assert settings.status == T["settings_saved"].format(path=config.path)
    saved = tomllib.loads(config.path.read_text(encoding="utf-8"))
    assert saved["local"]["port"] == 11113 and saved["ui"]["idle_timeout"] == 120
    assert saved["local"]["institution_name"] == "Clinique Saint-Éloi"
    assert ui.app.ui.idle_timeout == 120
    # Audited: a Security Alert (software configuration) naming what changed, not what it was.
    [alert] = [e for e in trail.queue().entries(started) if e.event == "Security Alert"]
    assert alert.event_type == "Software Configuration" and alert.outcome == 0
    assert b"changed: local, ui" in alert.frame and config.path.as_uri().encode() in alert.frame


def test_no_pin_configured_means_locked(kiosk_ui, demo):
    from dataclasses import replace

    from kiosk.ui.widgets.dialogs import MessageCard, PinPad

    peers, config = demo
    config = replace(config, ui=replace(config.ui, admin_pin=""))
    ui = kiosk_ui(config, demo=peers)
    ui.tap(ui.app.root.ids.banner.ids.settings)
    card = ui.wait(lambda: ui.modal(MessageCard), what="the locked message")
    assert card.body == T["pin_locked"] and ui.modal(PinPad) is None


def test_camera_preview_and_capture_key(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    acquire = open_source(ui, "A1004", "Demo camera")
    ui.wait(lambda: acquire.live and acquire.frames_shown > 5, what="live preview frames")
    ui.screenshot("camera")
    ui.tap(acquire.ids.scan)  # the Capture button
    ui.wait(lambda: acquire.count == 1 and not acquire.busy, what="a captured frame")
    from kivy.core.window import Window

    Window.dispatch("on_key_down", 32, 44, " ", [])  # space bar / foot pedal
    ui.wait(lambda: acquire.count == 2 and not acquire.busy, what="a second frame by key")
    assert [c.kind.value for c in ui.app.session.captures] == ["video frame", "video frame"]


def test_abandoned_session_resumes_from_outbox(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    scan_one_page(ui, "A1001")
    ui.tap(ui.app.root.ids.banner.ids.finish)
    from kiosk.ui.widgets.dialogs import ConfirmCard, MessageCard
    from kiosk.ui.widgets.finish import FinishCard

    ui.tap(ui.wait(lambda: ui.modal(FinishCard), what="the Finish question").ids.keep)
    ui.wait(lambda: ui.app.session is None, what="the session to end")
    message = ui.wait(lambda: ui.modal(MessageCard), what="the kept notice")
    assert message.body == T["finish_kept"].format(count=1)
    ui.tap(message.ids.close)
    ui.wait(lambda: ui.modal() is None, what="the card to close")
    ui.tap(ui.app.root.ids.banner.ids.outbox)
    outbox = ui.screen("outbox")
    row = ui.wait(lambda: outbox.ids.kept.children and outbox.ids.kept.children[0], what="the kept session")
    assert "DEMO001" in row.text
    ui.screenshot("outbox_kept")
    ui.tap(row.ids.resume)
    ui.tap(ui.wait(lambda: ui.modal(ConfirmCard), what="the patient confirmation").ids.yes)
    ui.wait(lambda: ui.app.manager.current == "review", what="the review screen")
    assert ui.app.session.context.patient_id == "DEMO001" and len(ui.app.session) == 1
    assert "DEMO001" in ui.app.root.ids.banner.ids.patient.text


def test_new_patient_form_validates_then_confirms(kiosk_ui, demo):
    from kiosk.ui.screens.patient import NewPatientCard
    from kiosk.ui.widgets.dialogs import ConfirmCard

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    ui.tap(ui.screen("patient").ids.new)
    form = ui.wait(lambda: ui.modal(NewPatientCard), what="the new patient form")
    form.ids.family.text, form.ids.given.text, form.ids.pid.text = "Novák", "Jan", "NEW42"
    form.ids.birth.text, form.ids.sex.text = "2099-01-01", "M"
    ui.tap(form.ids.ok)
    assert "birth" in form.error.lower() and ui.modal(NewPatientCard) is form  # a future birth date
    form.ids.birth.text = "1970-05-06"
    ui.tap(form.ids.ok)
    card = ui.wait(lambda: ui.modal(ConfirmCard), what="the confirmation card")
    values = " ".join(c.text for c in card.ids.rows.children)
    assert "NOVÁK, Jan" in values and "NEW42" in values and "1970-05-06" in values


def test_crop_by_dragging_on_the_review_screen(kiosk_ui, demo):
    from kivy.tests import UnitTestTouch

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    acquire = scan_one_page(ui, "A1005")
    ui.tap(acquire.ids.review)
    review = ui.screen("review")
    ui.wait(lambda: review.ids.large.texture is not None, what="the large view")
    height, width = ui.app.session.captures[0].pixels.shape[:2]
    ui.tap(review.ids.crop_button)
    x, y, w, h = review.ids.crop.image_rect
    touch = UnitTestTouch(x + w * 0.25, y + h * 0.75)  # from a quarter in, from the top ...
    touch.touch_down()
    ui.pump(1)
    touch.touch_move(x + w * 0.75, y + h * 0.25)  # ... to three quarters: the middle half
    ui.pump(1)
    touch.touch_up()
    ui.pump(2)
    ui.tap(review.ids.crop_button)  # Apply crop
    ui.wait(lambda: not review.busy and ui.app.session.captures[0].pixels.shape[0] < height, what="the crop")
    new_height, new_width = ui.app.session.captures[0].pixels.shape[:2]
    assert abs(new_height - height / 2) <= 3 and abs(new_width - width / 2) <= 3


def test_import_files_from_a_folder(kiosk_ui, demo, tmp_path):
    from PIL import Image

    from kiosk.ui.screens.acquire import ImportCard

    folder = tmp_path / "usb"
    folder.mkdir()
    for index, colour in enumerate(((200, 30, 30), (30, 30, 200))):
        Image.new("RGB", (64, 48), colour).save(folder / f"photo{index}.png")
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    acquire = open_source(ui, "A1004", "Files")
    ui.tap(acquire.ids.scan)  # "Choose files"
    chooser_card = ui.wait(lambda: ui.modal(ImportCard), what="the file chooser")
    chooser = chooser_card.ids.chooser
    chooser.path = str(folder)
    ui.wait(lambda: len(chooser.files) >= 2, what="the folder listing")
    chooser.selection = [str(folder / "photo0.png"), str(folder / "photo1.png")]
    ui.pump(3)
    ui.screenshot("import")
    ui.tap(chooser_card.ids.ok)
    ui.wait(lambda: acquire.count == 2 and not acquire.busy, what="two imported files")
    pixels = [c.pixels for c in ui.app.session.captures]
    assert [tuple(p[0, 0]) for p in pixels] == [(200, 30, 30), (30, 30, 200)]


def test_discarding_an_unsent_session_needs_the_pin(kiosk_ui, demo):
    from kiosk.ui.widgets.dialogs import ConfirmCard, PinPad

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    scan_one_page(ui, "A1002")
    ui.app.end_session()
    ui.app.go("outbox")
    outbox = ui.screen("outbox")
    row = ui.wait(lambda: outbox.ids.kept.children and outbox.ids.kept.children[0], what="the kept session")
    ui.tap(row.ids.discard)
    pad = ui.wait(lambda: ui.modal(PinPad), what="the PIN pad")
    press_pin(ui, pad, "1234")
    confirm = ui.wait(lambda: ui.modal(ConfirmCard), what="the discard question")
    assert len(ui.app.store.summaries()) == 1
    ui.tap(confirm.ids.yes)
    ui.wait(lambda: not ui.app.store.summaries() and not outbox.ids.kept.children, what="the session to go")
