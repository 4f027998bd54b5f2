"""The whole flow against real peers: wlmscpfs worklist, SANE's test scanner (ADF), Orthanc with commitment."""

from __future__ import annotations

import numpy as np

from kiosk.ui.strings import T
from tests.ui.test_ui_flow import start_session_by_barcode


def real_config(tmp_path, wlmscpfs, orthanc):
    from kiosk.config import parse_config

    path = tmp_path / "kiosk.toml"
    data = {
        "local": {"ae_title": "KIOSK", "port": orthanc.extra["kiosk_port"]},
        "destinations": {"orthanc": {"ae_title": orthanc.aet, "host": "127.0.0.1", "port": orthanc.port,
                                     "storage_commitment": True}},
        "worklist": {"ae_title": wlmscpfs.aet, "host": "127.0.0.1", "port": wlmscpfs.port,
                     "station_ae_title": "KIOSK"},
        "query": {"ae_title": orthanc.aet, "host": "127.0.0.1", "port": orthanc.port},
        "outbox": {"spool_dir": str(tmp_path / "outbox"), "min_free_mb": 10},
        "ui": {"admin_pin": "2468", "sessions_dir": str(tmp_path / "sessions")},
    }
    config = parse_config(data, path)
    from kiosk.config import to_toml

    path.write_text(to_toml(config), encoding="utf-8")
    return config


def test_worklist_sane_adf_rotate_send_to_orthanc(kiosk_ui, tmp_path, wlmscpfs, worklist_items, orthanc,
                                                   sane_test_backend):
    orthanc.clear()
    ui = kiosk_ui(real_config(tmp_path, wlmscpfs, orthanc))
    card = start_session_by_barcode(ui, "ACC100", rows=3)
    assert "PID100" in " ".join(c.text for c in card.ids.rows.children)
    ui.tap(card.ids.yes)
    acquire = ui.screen("acquire")
    ui.wait(lambda: any("test:0" in d.uri for d in acquire.devices), what="the SANE test scanner")
    index = next(i for i, d in enumerate(acquire.devices) if d.uri == "sane:test:0")
    acquire.select(acquire.devices[index])
    acquire.ids.presets.text = "Document (feeder)"
    ui.pump(2)
    # SANE's test backend always holds 10 sheets: the user stops the batch after three.
    acquire.ids.page_limit.text = T["pages_n"].format(count=3)
    ui.tap(acquire.ids.scan)
    ui.wait(lambda: not acquire.busy and acquire.count, timeout=60, what="the ADF batch")
    pages = acquire.count
    assert pages == 3, acquire.status
    ui.tap(acquire.ids.review)
    review = ui.screen("review")
    ui.wait(lambda: len(review.ids.thumbs.children) == pages, what="thumbnails")
    original = ui.app.session.captures[0].pixels
    ui.tap(review.ids.rotate)
    ui.wait(lambda: not review.busy and ui.app.session.captures[0].pixels is not original, what="rotation")
    assert np.array_equal(ui.app.session.captures[0].pixels, np.rot90(original, -1))
    ui.tap(review.ids.send)
    send = ui.screen("send")
    ui.tap(send.ids.send)
    ui.wait(lambda: send.finished, timeout=120, what="the send result")
    assert send.result == T["send_result_commit"].format(done=pages, total=pages, destination="orthanc")
    from kiosk.net.listener import Listener

    # Orthanc's N-EVENT-REPORT came to the UI's own listener (one port, shared by the delivery thread).
    assert Listener.running(orthanc.extra["kiosk_port"]) is ui.app.services.listener is not None

    item = next(i for i in worklist_items if i.AccessionNumber == "ACC100")
    tags = [orthanc.tags(i) for i in orthanc.instances()]
    assert len(tags) == pages
    assert {t["PatientID"] for t in tags} == {"PID100"}
    assert {t["PatientName"] for t in tags} == {"MÜLLER^JÜRGEN"}
    assert {t["AccessionNumber"] for t in tags} == {"ACC100"}
    assert {t["StudyInstanceUID"] for t in tags} == {item.StudyInstanceUID}
    assert len({t["SOPInstanceUID"] for t in tags}) == pages

    # Next patient; "Find in PACS" now finds the study just sent.
    ui.tap(send.ids.next)
    patient = ui.screen("patient")
    ui.wait(lambda: ui.app.manager.current == "patient" and not patient.ids.find.disabled, what="Find in PACS")
    ui.type("PID100")
    ui.tap(patient.ids.find)
    ui.wait(lambda: len(patient.ids.rows.children) == 1 and "ACC100" in patient.ids.rows.children[0].text,
            what="the PACS study")


def test_new_patient_id_lookup_on_orthanc_and_wlmscpfs(tmp_path, wlmscpfs, worklist_items, orthanc):
    from tests.support.outbox_data import make_instances

    from kiosk.net.store import store_files
    from kiosk.ui.services import Services

    orthanc.clear()
    config = real_config(tmp_path, wlmscpfs, orthanc)
    made = make_instances(tmp_path / "pacs", 1, patient_id="PACS42")
    assert store_files(config.destinations["orthanc"], config.local, list(made.values())).ok
    services = Services(config)
    assert services.patient_id_holders("PACS42") == ["Outbox^Test"]  # on the PACS only
    assert services.patient_id_holders("PID100") == ["MÜLLER^JÜRGEN"]  # on the worklist, any date and station
    assert services.patient_id_holders("NOBODY1") == []
