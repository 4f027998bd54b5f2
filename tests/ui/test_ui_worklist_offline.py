"""A worklist outage: the patient screen keeps the last list, says it is offline and how old it is, and the
copy on disk is the owner's only."""

from __future__ import annotations

import logging
import stat

from kiosk.ui.strings import T
from kiosk.worklist_cache import NAME
from tests.ui.test_ui_flow import demo  # noqa: F401 (fixture)


def test_the_last_worklist_is_shown_offline_when_the_server_is_down(kiosk_ui, demo, caplog):
    from kiosk.ui.widgets.dialogs import ConfirmCard

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    patient = ui.screen("patient")
    ui.wait(lambda: len(patient.ids.rows.children) == 5, what="5 worklist rows")
    assert patient.notice == ""
    copy = ui.app.services.cache_dir / NAME
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert "DEMO001" in copy.read_text(encoding="utf-8")
    peers._servers.pop(1).shutdown()  # the worklist server (the PACS stays up)
    patient.refresh()
    ui.wait(lambda: not patient.loading and patient.notice, timeout=30, what="the offline notice")
    assert patient.notice == T["worklist_offline"].format(time=patient._updated, minutes=0)
    assert len(patient.ids.rows.children) == 5  # the front desk keeps working
    with caplog.at_level(logging.WARNING):
        patient.confirm(patient.contexts[0])
        ui.wait(lambda: ui.modal(ConfirmCard), what="the confirmation card")
    assert any("picked from the offline copy" in r.getMessage() for r in caplog.records)
    assert not any("DEMO00" in r.getMessage() or "MÜLLER" in r.getMessage() for r in caplog.records)


def test_more_filters_ask_the_worklist_server_for_birth_date_sex_and_procedure(kiosk_ui, demo):
    from kiosk.ui.screens.patient import FilterCard

    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    patient = ui.screen("patient")
    ui.wait(lambda: len(patient.ids.rows.children) == 5, what="5 worklist rows")
    ui.tap(patient.ids.more_filters)
    card = ui.wait(lambda: ui.modal(FilterCard), what="the filter card")
    card.ids.sex.text = "F"
    ui.tap(card.ids.apply)
    ui.wait(lambda: len(patient.ids.rows.children) == 2 and not patient.loading, what="the two women")
    ui.screenshot("patient_filters")
    assert {c.patient_id for c in patient.contexts} == {"DEMO002", "DEMO004"}
    assert patient.ids.more_filters.text == T["filters_active"].format(count=1)
    ui.tap(patient.ids.more_filters)
    card = ui.wait(lambda: ui.modal(FilterCard), what="the filter card again")
    assert card.ids.sex.text == "F"
    card.ids.procedure.text = "*photo*"
    ui.tap(card.ids.apply)
    ui.wait(lambda: len(patient.ids.rows.children) == 1 and not patient.loading, what="the wound photo order")
    assert patient.contexts[0].patient_id == "DEMO004"
    ui.tap(patient.ids.more_filters)
    card = ui.wait(lambda: ui.modal(FilterCard), what="the filter card once more")
    card.ids.time.text = "25:00"
    ui.tap(card.ids.apply)
    ui.wait(lambda: not patient.loading and "25:00" not in patient.status and "is not understood" in patient.status,
            what="the bad time named")
    ui.tap(patient.ids.more_filters)
    ui.tap(ui.wait(lambda: ui.modal(FilterCard), what="the card").ids.clear_all)
    ui.wait(lambda: len(patient.ids.rows.children) == 5 and not patient.loading, what="all five again")
