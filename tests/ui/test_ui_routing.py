"""The Send screen preselects the destinations the [routing] rules choose, says why, and sends there."""

from __future__ import annotations

from dataclasses import replace

from kiosk.config import NodeConfig, RoutingConfig
from tests.support.outbox_data import received_uids
from tests.ui.test_ui_flow import demo, send_one_page  # noqa: F401 (fixture)


def test_the_rules_preselect_the_destinations_and_the_send_screen_says_why(kiosk_ui, demo, storescp):
    peers, config = demo
    docs = NodeConfig(name="docs", ae_title=storescp.aet, host="127.0.0.1", port=storescp.port)
    routing = RoutingConfig(rules={"scans": {"source": ["scanner"], "send_to": ["docs"]},
                                   "clips": {"source": ["camera"], "send_to": ["demo-pacs"]}})
    config = replace(config, destinations={**config.destinations, "docs": docs}, routing=routing)
    ui = kiosk_ui(config, demo=peers)

    send = send_one_page(ui, "A1001")
    rows = {name: row for name, row in send.checks.items()}
    assert rows["docs"].active and rows["docs"].why == "Chosen by rule 'scans' (source scanner)"
    assert not rows["demo-pacs"].active and rows["demo-pacs"].why == "Not chosen by the routing rules for these images"
    ui.screenshot("send-routing")
    ui.tap(send.ids.send)
    ui.wait(lambda: send.finished, timeout=60, what="the send result")
    assert len(received_uids(storescp.extra["received"])) == 1
    assert not list(peers.received.glob("*.dcm"))


def test_a_stow_destination_and_a_refusing_rule_from_the_send_screen(kiosk_ui, demo, orthanc_web, storescp, tmp_path):
    from kiosk.config import CoerceConfig
    from tests.conftest import ORTHANC_WEB_PASSWORD, ORTHANC_WEB_USER

    peers, config = demo
    orthanc_web.clear()
    password = tmp_path / "web.password"
    password.write_text(ORTHANC_WEB_PASSWORD)
    password.chmod(0o600)
    web = NodeConfig(name="web", ae_title="", host="127.0.0.1", port=0, stow_url=orthanc_web.dicomweb_url,
                     username=ORTHANC_WEB_USER, password_file=str(password))
    legacy = NodeConfig(name="legacy", ae_title=storescp.aet, host="127.0.0.1", port=storescp.port,
                        coerce=CoerceConfig(require=["AdmittingDiagnosesDescription"]))
    config = replace(config, destinations={"web": web, "legacy": legacy})
    ui = kiosk_ui(config, demo=peers)

    send = send_one_page(ui, "A1001")
    assert orthanc_web.dicomweb_url in send.checks["web"].text
    ui.tap(send.ids.send)
    ui.wait(lambda: send.finished, timeout=60, what="the send result")
    assert "1 of 1 stored on web" in send.result
    assert "Not sent to legacy" in send.result and "AdmittingDiagnosesDescription" in send.result
    assert "wait there until someone fixes this" in send.result
    assert len(orthanc_web.instances()) == 1
    assert received_uids(storescp.extra["received"]) == []
