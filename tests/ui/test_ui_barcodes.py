"""Touch UI: pages with another patient's barcode block Send (delete, or Send anyway with the PIN)."""

from __future__ import annotations

from dataclasses import replace

from PIL import Image

from kiosk.config import BarcodesConfig
from kiosk.ui.strings import T
from tests.support.barcode_pages import blank_page, page
from tests.ui.test_ui_admin import press_pin
from tests.ui.test_ui_flow import demo, start_session_by_barcode  # noqa: F401 (fixture)

SMALL = (1240, 1754)  # A4 at 150 dpi
RULES = BarcodesConfig(patient_id=r"^(DEMO\d+)$", separator="^SEPARATOR$")


def test_a_flagged_page_blocks_send_until_deleted_or_the_pin(kiosk_ui, demo, tmp_path):
    from kiosk.ui.widgets.dialogs import PinPad

    peers, config = demo
    ui = kiosk_ui(replace(config, barcodes=RULES), demo=peers)
    files = []
    for name, pixels in [("foreign1", page("DEMO007", "Code128", seed=1, size=SMALL).pixels),
                         ("foreign2", page("DEMO008", "QRCode", seed=2, size=SMALL).pixels),
                         ("own", blank_page(3, SMALL).pixels)]:
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
        files.append(str(tmp_path / f"{name}.png"))
    ui.tap(start_session_by_barcode(ui, "DEMO003").ids.yes)
    acquire = ui.screen("acquire")
    acquire.import_files(files)  # what the file chooser's choice does: read on the worker thread
    ui.wait(lambda: acquire.count == 3 and not acquire.busy, what="3 imported pages")

    ui.tap(acquire.ids.review)
    review = ui.screen("review")
    ui.wait(lambda: len(review.ids.thumbs.children) == 3, what="3 thumbnails")
    badges = [t.badge for t in reversed(review.ids.thumbs.children)]
    assert badges == [T["barcode_badge"], T["barcode_badge"], ""]
    assert review.flag == T["barcode_patient"].format(value="DEMO007")
    ui.screenshot("review-barcode")
    ui.tap(review.ids.delete)
    ui.wait(lambda: len(review.ids.thumbs.children) == 2 and not review.busy, what="the page deleted")
    assert review.flag == T["barcode_patient"].format(value="DEMO008")

    ui.tap(review.ids.send)
    send = ui.screen("send")
    assert send.ids.send.disabled and "page 1" in send.blocked and "ID DEMO008" in send.blocked
    ui.screenshot("send-barcode")
    ui.tap(send.ids.send_anyway)
    pad = ui.wait(lambda: ui.modal(PinPad), what="the PIN pad")
    press_pin(ui, pad, "1234")
    ui.wait(lambda: send.finished, timeout=60, what="the send result")
    assert send.result == T["send_result_commit"].format(done=2, total=2, destination="demo-pacs")
    assert len(list(peers.received.glob("*.dcm"))) == 2
