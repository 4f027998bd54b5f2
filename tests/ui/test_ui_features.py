"""Touch UI: feeder page limits, worklist filters and pull to refresh, generated IDs,
per-job outbox actions, preset editing, the app's DICOM listener and the strings rule."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import replace

import numpy as np
import pytest

from kiosk.study import StudyContext
from kiosk.ui.strings import T
from tests.ui.test_ui_admin import press_pin
from tests.ui.test_ui_flow import demo, start_session_by_barcode  # noqa: F401 (fixture)
from tests.support.paths import ROOT
from tests.support.worklist_data import doubtful_items

UI_DIR = ROOT / "kiosk" / "ui"


def with_extra(config, section, **values):
    return replace(config, **{section: replace(getattr(config, section), **values)})


def scan_with_feeder(ui, pages):
    from drivers.device import DeviceInfo

    acquire = ui.screen("acquire")
    ui.wait(lambda: acquire.devices, what="devices")
    acquire.select(DeviceInfo(uri=f"demo:scanner?pages={pages}", name="demo feeder", kind="scanner"))
    acquire.ids.presets.text = "Document (feeder)"
    ui.pump(2)
    return acquire


def test_feeder_page_limit_and_stop_after_this_page(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    ui.tap(start_session_by_barcode(ui, "A1001").ids.yes)
    acquire = scan_with_feeder(ui, 10)
    assert acquire.ids.page_limit.height > 0  # shown for feeder presets only
    acquire.ids.page_limit.text = T["pages_n"].format(count=2)
    assert acquire.page_limit == "2"
    ui.tap(acquire.ids.scan)
    ui.wait(lambda: not acquire.busy and acquire.count, what="the limited batch")
    assert acquire.count == 2

    acquire.ids.page_limit.text = T["pages_all"]
    ui.tap(acquire.ids.scan)
    assert acquire.busy and not acquire.ids.stop_after.disabled
    ui.tap(acquire.ids.stop_after)
    ui.wait(lambda: not acquire.busy, what="the batch to stop")
    assert 3 <= acquire.count < 12  # stopped after the page in progress; the feeder still holds pages
    assert not acquire.stopping and acquire.ids.stop_after.text == T["stop_after_page"]


def test_worklist_date_and_modality_filters_and_pull_to_refresh(kiosk_ui, demo):
    from kivy.tests import UnitTestTouch

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    patient = ui.screen("patient")
    ui.wait(lambda: len(patient.ids.rows.children) == 5, what="today's 5 rows")

    patient.ids.date.text = T["date_tomorrow"]
    ui.wait(lambda: not patient.loading and not patient.ids.rows.children, what="no rows tomorrow")
    patient.ids.date.text = T["date_week"]
    ui.wait(lambda: len(patient.ids.rows.children) == 5, what="5 rows this week")

    patient.ids.modality.text = "XC"
    ui.wait(lambda: len(patient.ids.rows.children) == 1, what="the one XC item")
    assert "NEILL" in patient.ids.rows.children[0].text
    patient.ids.modality.text = T["modality_any"]
    ui.wait(lambda: len(patient.ids.rows.children) == 5, what="all modalities")

    patient.ids.dates.text = "2001-02-30"
    patient.refresh()
    assert patient.status.startswith(T["date_not_understood"].format(text="20010230"))
    today = dt.date.today()
    patient.ids.dates.text = f"{today - dt.timedelta(days=2):%Y-%m-%d} to {today:%Y-%m-%d}"
    patient.refresh()
    ui.wait(lambda: len(patient.ids.rows.children) == 5 and "to" in patient.status, what="the date range")
    ui.screenshot("patient_filters")

    # Pull to refresh: a new item appears after dragging the list down from its top.
    from kiosk.demo_peers import demo_worklist

    extra = demo_worklist()[0]
    extra.PatientID, extra.AccessionNumber = "DEMO009", "A1009"
    peers.items.append(extra)
    scroll = patient.ids.scroll
    x, top = scroll.to_window(scroll.center_x, scroll.top - 20)
    touch = UnitTestTouch(x, top)
    touch.touch_down()
    for step in range(1, 9):
        touch.touch_move(x, top - step * 25)
        ui.pump(1)
    touch.touch_up()
    ui.wait(lambda: len(patient.ids.rows.children) == 6, what="the refreshed list")
    ui.wait(lambda: scroll.scroll_y >= 0.999 and not scroll.effect_y.is_manual, what="the list to settle")


def test_generated_patient_id_where_the_site_allows_it(kiosk_ui, demo):
    from kiosk.ui.screens.patient import NewPatientCard

    peers, config = demo
    ui = kiosk_ui(with_extra(config, "ui", generate_patient_id=True, patient_id_prefix="KX-"), demo=peers)
    ui.tap(ui.screen("patient").ids.new)
    card = ui.wait(lambda: ui.modal(NewPatientCard), what="the new-patient form")
    assert re.fullmatch(r"KX-\d{10}[0-9A-F]{3}", card.ids.pid.text), card.ids.pid.text
    ui.tap(card.ids.cancel)
    ui.wait(lambda: ui.modal() is None, what="the form to close")

    ui2_config = with_extra(config, "ui", generate_patient_id=False)
    ui.app.apply_config(ui2_config)
    ui.tap(ui.screen("patient").ids.new)
    card = ui.wait(lambda: ui.modal(NewPatientCard), what="the new-patient form")
    assert card.ids.pid.text == ""


def test_a_new_patient_id_already_in_use_is_refused(kiosk_ui, demo, monkeypatch):
    from kiosk.ui.screens import patient as patient_screen
    from kiosk.ui.screens.patient import NewPatientCard
    from kiosk.ui.widgets.dialogs import ConfirmCard

    peers, config = demo
    proposals = iter(["DEMO002", "KX-FREE1"])
    monkeypatch.setattr(patient_screen, "generated_patient_id", lambda prefix: next(proposals))
    ui = kiosk_ui(with_extra(config, "ui", generate_patient_id=True), demo=peers)

    def open_form():
        ui.tap(ui.screen("patient").ids.new)
        card = ui.wait(lambda: ui.modal(NewPatientCard), what="the new-patient form")
        card.ids.family.text, card.ids.birth.text, card.ids.sex.text = "NEWMAN", "1970-01-01", "F"
        return card

    card = open_form()
    assert card.ids.pid.text == "DEMO002"
    # A typed ID that the worklist has for someone else is refused, naming them.
    card.ids.pid.text = "DEMO001"
    ui.tap(card.ids.ok)
    ui.wait(lambda: not card.checking and card.error != T["new_id_checking"], what="the ID check")
    assert "DEMO001 already belongs to MÜLLER" in card.error and ui.modal() is card and ui.app.session is None
    # A proposed ID that turns out to be taken is replaced by a new proposal.
    card.ids.pid.text = "DEMO002"
    ui.tap(card.ids.ok)
    confirm = ui.wait(lambda: ui.modal(ConfirmCard), what="the confirmation card")
    assert card.ids.pid.text == "KX-FREE1"
    assert "KX-FREE1" in " ".join(c.text for c in confirm.ids.rows.children)
    ui.tap(confirm.ids.no)
    ui.wait(lambda: ui.modal() is None, what="the card to close")

    # Without the worklist server the ID cannot be checked: said so, and a second tap goes on.
    monkeypatch.setattr(patient_screen, "generated_patient_id", lambda prefix: "KX-FREE2")
    peers.stop()
    card = open_form()
    ui.tap(card.ids.ok)
    ui.wait(lambda: card.error.startswith("Could not check"), what="the failed check")
    assert ui.modal() is card
    ui.tap(card.ids.ok)
    confirm = ui.wait(lambda: ui.modal(ConfirmCard), what="the confirmation card")
    assert "KX-FREE2" in " ".join(c.text for c in confirm.ids.rows.children)


def job_rows(outbox) -> list:
    """The Outbox screen's rows of image jobs (MPPS rows carry no job)."""
    return [row for row in outbox.ids.jobs.children if row.job_id]


def test_outbox_retry_and_remove_one_selected_job(kiosk_ui, demo):
    from kiosk.ui.widgets.dialogs import PinPad

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    ui.tap(start_session_by_barcode(ui, "A1002").ids.yes)
    acquire = scan_with_feeder(ui, 2)
    ui.tap(acquire.ids.scan)
    ui.wait(lambda: acquire.count == 2 and not acquire.busy, what="2 pages")
    peers.stop()  # the PACS is down: both jobs fail and wait in the outbox
    ui.tap(acquire.ids.review)
    ui.tap(ui.screen("review").ids.send)
    send = ui.screen("send")
    ui.tap(send.ids.send)
    ui.wait(lambda: send.finished, timeout=60, what="the failed send")
    ui.tap(ui.app.root.ids.banner.ids.outbox)
    outbox = ui.screen("outbox")
    ui.wait(lambda: len(job_rows(outbox)) == 2, what="two job rows")  # (and the MPPS rows: the RIS is down too)
    assert outbox.ids.retry.text == T["retry_all"]
    first = job_rows(outbox)[-1]
    ui.tap(first)
    assert first.selected and outbox.selected_jobs == [first.job_id]
    assert outbox.ids.retry.text == T["retry_selected"].format(count=1)
    ui.screenshot("outbox_selected")
    shown = set(job_rows(outbox))
    ui.tap(outbox.ids.retry)  # open to all: no PIN
    assert ui.modal(PinPad) is None and not outbox.selected_jobs
    ui.wait(lambda: len(job_rows(outbox)) == 2 and not shown & set(job_rows(outbox)),
            what="the list reloaded after the retry")
    attempts = {j.id: j.attempts for j in ui.app.services.outbox_jobs()}

    row = next(r for r in job_rows(outbox) if r.job_id != first.job_id)
    ui.tap(row)
    ui.tap(outbox.ids["remove"])
    pad = ui.wait(lambda: ui.modal(PinPad), what="the PIN pad")
    press_pin(ui, pad, "1234")
    ui.wait(lambda: row.job_id not in {j.id for j in ui.app.services.outbox_jobs()}, what="the removed job")
    assert first.job_id in attempts and first.job_id in {j.id for j in ui.app.services.outbox_jobs()}


def test_scan_presets_are_edited_and_validated_in_settings(kiosk_ui, demo):
    from kiosk.ui.widgets.dialogs import PinPad

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    ui.tap(ui.app.root.ids.banner.ids.settings)
    press_pin(ui, ui.wait(lambda: ui.modal(PinPad), what="the PIN pad"), "1234")
    settings = ui.wait(lambda: ui.app.manager.current == "settings" and ui.screen("settings"), what="settings")
    assert settings.fields["presets.Document.dpi"].ids.input.text == "300"
    settings.ids.form.parent.scroll_to(settings.fields["ui.kiosk_mode"], animate=False)
    ui.screenshot("settings_presets")  # presets and the high-contrast check box
    assert settings.fields["presets.Film.depth"].ids.input.text == "16"
    settings.fields["presets.Document.mode"].ids.input.text = "purple"
    settings.fields["presets.Photo.dpi"].ids.input.text = "lots"
    ui.tap(settings.ids.save)
    assert "presets" in settings.status and "Document" in settings.status and "presets.Photo.dpi" in settings.status
    assert "presets" not in tomllib.loads(config.path.read_text(encoding="utf-8")) or \
        tomllib.loads(config.path.read_text(encoding="utf-8"))["presets"].get("Document", {}).get("mode") != "purple"

    settings.fields["presets.Document.mode"].ids.input.text = "color"
    settings.fields["presets.Photo.dpi"].ids.input.text = "400"
    ui.tap(settings.ids.save)
    assert settings.status == T["settings_saved"].format(path=config.path)
    saved = tomllib.loads(config.path.read_text(encoding="utf-8"))["presets"]
    assert saved["Document"]["mode"] == "color" and saved["Photo"]["dpi"] == 400
    from drivers.presets import preset

    assert preset("Photo", ui.app.kiosk_config.presets.tables()).dpi == 400


def test_the_ui_runs_our_listener_for_echo_and_commitment(kiosk_ui, demo):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    from kiosk.net.listener import Listener

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    port = config.local.port
    listener = ui.wait(lambda: Listener.running(port), what="the kiosk's listener")
    assert listener is ui.app.services.listener and not ui.app.services.listener_problem
    pacs = config.destinations["demo-pacs"]
    ae = AE(ae_title=pacs.ae_title)  # a configured node may echo us
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=config.local.ae_title)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    stranger = AE(ae_title="STRANGER")
    stranger.add_requested_context(Verification)
    assert not stranger.associate("127.0.0.1", port, ae_title=config.local.ae_title).is_established
    ui.app.stop()
    assert Listener.running(port) is None  # the port is free again when the app stops


def test_every_user_facing_string_lives_in_strings_py():
    """No literal sentences in .kv rules or screen code: text comes from T / app.t()."""
    literal_kv = re.compile(r"^\s*(text|hint_text|title)\s*:\s*['\"](?!\\)[^'\"]*[A-Za-z]{2}", re.M)
    literal_py = re.compile(r"\b(text|hint_text|title|status|body|result)\s*=\s*f?['\"][^'\"]*[A-Za-z]{3}")
    problems = []
    for path in sorted(UI_DIR.rglob("*.kv")):
        problems += [f"{path.name}: {m.group(0).strip()}" for m in literal_kv.finditer(path.read_text())]
    for path in sorted((UI_DIR / "screens").glob("*.py")) + sorted((UI_DIR / "widgets").glob("*.py")):
        problems += [f"{path.name}: {m.group(0).strip()}" for m in literal_py.finditer(path.read_text())]
    assert not problems, "\n".join(problems)


def test_scroll_views_and_the_screen_manager_clip_with_the_scissor_not_the_stencil(kiosk_ui, demo):
    """The stencil costs ~20 ms a frame with software GL; the scissor rectangle must match the view."""
    from kivy.graphics import StencilPush
    from kivy.graphics.scissor_instructions import ScissorPush

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    ui.app.start_session(StudyContext(patient_name="CLIP^VIEW", patient_id="V1"))
    acquire = ui.screen("acquire")
    ui.wait(lambda: acquire.ids.tiles.children, what="source tiles")
    view = acquire.ids.tiles.parent
    before = view.canvas.before.children
    assert not any(isinstance(i, StencilPush) for i in before)
    [scissor] = [i for i in before if isinstance(i, ScissorPush)]
    x, y = view.to_window(view.x, view.y)
    assert (scissor.x, scissor.y, scissor.width, scissor.height) == (int(x), int(y), int(view.width), int(view.height))
    manager = ui.app.manager
    instructions = manager.canvas.before.children + manager.canvas.after.children
    assert not any(isinstance(i, StencilPush) for i in instructions)
    [scissor] = [i for i in manager.canvas.before.children if isinstance(i, ScissorPush)]
    x, y = manager.to_window(manager.x, manager.y)
    assert (scissor.x, scissor.y, scissor.width, scissor.height) == (int(x), int(y), int(manager.width), int(manager.height))


@pytest.mark.parametrize(("frame", "preview", "expected"), [
    ((1080, 1920), (952, 526), (540, 960)),    # halved; the GPU does the last 1 %
    ((1080, 1920), (640, 360), (360, 640)),    # a third
    ((1079, 1919), (952, 526), (539, 959)),    # an odd size loses one edge pixel, keeps the fast path
    ((720, 1280), (952, 526), (720, 1280)),    # less than twice the preview: as it is
])
def test_preview_frames_are_scaled_by_a_whole_factor(frame, preview, expected):
    from kiosk.ui.widgets.thumbs import fit

    pixels = np.zeros((*frame, 3), np.uint8)
    assert fit(pixels, preview).shape == (*expected, 3)


def test_worklist_cut_at_max_results_says_so_on_the_patient_screen(kiosk_ui, demo):
    """Staff did not find the patient in a list cut at max_results and registered them again."""
    peers, config = demo
    ui = kiosk_ui(replace(config, worklist=replace(config.worklist, max_results=3)), demo=peers)
    patient = ui.screen("patient")
    ui.wait(lambda: len(patient.ids.rows.children) == 3 and not patient.loading, what="3 of 5 rows")
    assert patient.ids.notice.text == T["worklist_cut"].format(count=3) and patient.ids.notice.height > 0
    ui.screenshot("worklist_cut")


def test_worklist_complete_shows_no_notice(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(replace(config, worklist=replace(config.worklist, max_results=5)), demo=peers)
    patient = ui.screen("patient")
    ui.wait(lambda: len(patient.ids.rows.children) == 5 and not patient.loading, what="all 5 rows")
    assert patient.notice == "" and patient.ids.notice.height == 0


def _cards(title):
    from kivy.core.window import Window

    from kiosk.ui.widgets.dialogs import ConfirmCard

    return [c for c in Window.children if isinstance(c, ConfirmCard) and c.title == title and c._is_open]


@pytest.mark.parametrize("worklist_items", [doubtful_items()], ids=["doubtful"])
def test_utf8_declared_latin1_needs_the_operators_choice(kiosk_ui, tmp_path, wlmscpfs):
    """A worklist that writes UTF-8 under ISO_IR 100: both spellings are shown, the chosen one is used."""
    from kiosk.config import parse_config
    from tests.ui.test_ui_flow import tap_text

    config = parse_config({"worklist": {"ae_title": wlmscpfs.aet, "host": "127.0.0.1", "port": wlmscpfs.port,
                                        "station_ae_title": "KIOSK"},
                           "ui": {"sessions_dir": str(tmp_path / "sessions")}})
    ui = kiosk_ui(config)
    patient = ui.screen("patient")
    ui.wait(lambda: len(patient.ids.rows.children) == 3, what="3 worklist rows")
    marked = [r.text for r in patient.ids.rows.children if T["reading_row"] in r.text]
    assert len(marked) == 1 and "PID300" in marked[0]
    # Terminal controls and a CR LF in a worklist value: shown as U+FFFD, the row keeps its two lines.
    [evil] = [r.text for r in patient.ids.rows.children if "PID666" in r.text]
    assert evil.count("\n") == 1 and not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in evil.replace("\n", ""))
    assert "\ufffd&bl;2J" in evil and "Scan\ufffd\ufffdFAKE ROW" in evil  # [ escaped for the markup
    tap_text(ui, patient.ids.rows, "PID300")
    [card] = ui.wait(lambda: _cards(T["reading_title"]), what="the spelling question")
    values = " ".join(c.text for c in card.ids.rows.children)
    # As sent, the name holds a C1 control (\x81): shown as U+FFFD, kept in the data if chosen.
    assert "ŠIMKOVÁ, ANNA" in values and "Å\xa0IMKOVÃ\ufffd, ANNA" in values and "Rentgen hrudníku" in values
    assert ui.app.session is None  # nothing starts before the choice and the confirmation
    ui.screenshot("reading_question")
    ui.tap(card.ids.yes)
    [confirm] = ui.wait(lambda: _cards(T["confirm_title"]), what="the confirmation card")
    assert "ŠIMKOVÁ, ANNA" in " ".join(c.text for c in confirm.ids.rows.children)
    ui.tap(confirm.ids.yes)
    ui.wait(lambda: ui.app.session is not None, what="the session")
    context = ui.app.session.context
    assert context.patient_name == "ŠIMKOVÁ^ANNA" and context.misread == {}
    assert context.requested_procedure_description == "Rentgen hrudníku"

    before = set(patient.ids.rows.children)
    ui.app.end_session()
    # The screen queries the worklist again on entering: tap a row of the new answer, not a stale one.
    ui.wait(lambda: ui.app.manager.current == "patient" and not patient.loading and len(patient.ids.rows.children) == 3
            and not before & set(patient.ids.rows.children), what="the list, queried again")
    tap_text(ui, patient.ids.rows, "PID300")
    [card] = ui.wait(lambda: _cards(T["reading_title"]), what="the spelling question again")
    ui.tap(card.ids.no)  # as sent: the operator knows better
    [confirm] = ui.wait(lambda: _cards(T["confirm_title"]), what="the confirmation card")
    ui.tap(confirm.ids.yes)
    ui.wait(lambda: ui.app.session is not None, what="the session")
    assert ui.app.session.context.patient_name == "Å\xa0IMKOVÃ\x81^ANNA"
