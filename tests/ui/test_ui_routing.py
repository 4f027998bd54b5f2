"""The Send screen preselects the destinations the [routing] rules choose, says why, and sends there."""

from __future__ import annotations

from dataclasses import replace

from kiosk.config import NodeConfig, RoutingConfig
from tests.support.outbox_data import received_uids
from tests.ui.test_ui_flow import demo, scan_one_page  # noqa: F401 (fixture)


def test_the_rules_preselect_the_destinations_and_the_send_screen_says_why(kiosk_ui, demo, storescp):
    peers, config = demo
    docs = NodeConfig(name="docs", ae_title=storescp.aet, host="127.0.0.1", port=storescp.port)
    routing = RoutingConfig(rules={"scans": {"source": ["scanner"], "send_to": ["docs"]},
                                   "clips": {"source": ["camera"], "send_to": ["demo-pacs"]}})
    config = replace(config, destinations={**config.destinations, "docs": docs}, routing=routing)
    ui = kiosk_ui(config, demo=peers)

    acquire = scan_one_page(ui, "A1001")
    ui.tap(acquire.ids.review)
    review = ui.screen("review")
    ui.wait(lambda: len(review.ids.thumbs.children) == 1, what="the thumbnail")
    ui.tap(review.ids.send)
    send = ui.screen("send")
    rows = {name: row for name, row in send.checks.items()}
    assert rows["docs"].active and rows["docs"].why == "Chosen by rule 'scans' (source scanner)"
    assert not rows["demo-pacs"].active and rows["demo-pacs"].why == "Not chosen by the routing rules for these images"
    ui.screenshot("send-routing")
    ui.tap(send.ids.send)
    ui.wait(lambda: send.finished, timeout=60, what="the send result")
    assert len(received_uids(storescp.extra["received"])) == 1
    assert not list(peers.received.glob("*.dcm"))
