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
    ui.screenshot("review_barcode")
    ui.tap(review.ids.delete)
    ui.wait(lambda: len(review.ids.thumbs.children) == 2 and not review.busy, what="the page deleted")
    assert review.flag == T["barcode_patient"].format(value="DEMO008")

    ui.tap(review.ids.send)
    send = ui.screen("send")
    assert send.ids.send.disabled and "page 1" in send.blocked and "ID DEMO008" in send.blocked
    ui.screenshot("send_barcode")
    ui.tap(send.ids.send_anyway)
    pad = ui.wait(lambda: ui.modal(PinPad), what="the PIN pad")
    press_pin(ui, pad, "1234")
    ui.wait(lambda: send.finished, timeout=60, what="the send result")
    assert send.result == T["send_result_commit"].format(done=2, total=2, destination="demo-pacs")
    assert len(list(peers.received.glob("*.dcm"))) == 2


def wristband(path, code: str = "") -> str:
    """A photo of a wristband held up to the camera: a white band with a name and (if ``code``) a Code 128."""
    import numpy as np
    from PIL import ImageDraw, ImageFont

    from tests.support.barcode_pages import symbol

    band = Image.new("RGB", (1100, 260), (240, 244, 250))
    ImageDraw.Draw(band).text((30, 20), "O'NEILL, MARY   DOB 2001-02-17", fill=(20, 20, 20),
                              font=ImageFont.load_default(size=36))
    if code:
        band.paste(Image.fromarray(symbol(code, "Code128", 3)).convert("RGB"), (30, 90))
    photo = Image.new("RGB", (1280, 720), (90, 70, 60))  # the room behind it
    photo.paste(band.rotate(4, expand=True, fillcolor=(90, 70, 60)), (80, 200))
    Image.fromarray(np.asarray(photo)).save(path)
    return str(path)


def test_a_wristband_held_up_to_the_camera_fills_the_search(kiosk_ui, demo, tmp_path):
    from kiosk.ui.widgets.dialogs import ConfirmCard
    from kiosk.ui.widgets.wristband import WristbandCard

    peers, config = demo
    picture = tmp_path / "wristband.png"
    wristband(picture)  # no barcode yet: the card waits
    camera = BarcodesConfig(camera=f"demo:camera?image={picture}")
    ui = kiosk_ui(replace(config, barcodes=camera), demo=peers)
    patient = ui.screen("patient")
    ui.wait(lambda: len(patient.ids.rows.children) == 5, what="5 worklist rows")
    ui.tap(patient.ids.wristband)
    card = ui.wait(lambda: ui.modal(WristbandCard), what="the wristband card")
    ui.wait(lambda: card.ids.preview.texture is not None and card.status == T["wristband_title"],
            what="the camera picture")
    ui.screenshot("wristband")
    ui.tap(card.ids.cancel)
    ui.wait(lambda: ui.modal(WristbandCard) is None, what="the card closed")

    wristband(picture, "DEMO004")  # now held the right way round
    ui.tap(patient.ids.wristband)
    confirm = ui.wait(lambda: ui.modal(ConfirmCard), what="the confirmation card")
    assert patient.ids.search.text == "DEMO004"
    assert "DEMO004" in " ".join(c.text for c in confirm.ids.rows.children)
