"""Review's page clean-up buttons (Straighten, Crop to page, Remove borders, Auto-rotate) and Undo."""

from __future__ import annotations

import threading

import numpy as np

from kiosk import cleanup
from kiosk.capture import Capture, SourceKind
from kiosk.study import StudyContext
from kiosk.ui.strings import T
from tests.support import pages
from tests.ui.test_ui_flow import demo  # noqa: F401 (fixture)

DPI = 100


def test_straighten_crop_borders_rotate_and_undo(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    ui.app.start_session(StudyContext(patient_name="CLEAN^TEST", patient_id="C1"))
    text = pages.text_page(DPI, np.random.default_rng(3))
    scan, _box = pages.on_dark_bed(text, (40, 50, 60, 30), degrees=5.0)  # paper skewed on a dark lid
    page = Capture(kind=SourceKind.SCANNED_DOCUMENT, pixels=np.asarray(scan), dpi=DPI)
    worker = threading.Thread(target=lambda: ui.app.session.add(page))
    worker.start()
    worker.join()
    review = ui.screen("review")
    ui.app.go("review")
    ui.wait(lambda: len(review.ids.thumbs.children) == 1, what="the thumbnail")
    assert review.ids.undo.disabled

    def current() -> Capture:
        return ui.app.session.captures[0]

    def tap_and_wait(button, what):
        before = current()
        ui.tap(button)
        ui.wait(lambda: not review.busy and current() is not before, what=what)

    tap_and_wait(review.ids.straighten, "the straightened page")
    assert abs(cleanup.plan(current(), cleanup.CleanUp(deskew=True)).angle) <= 0.3
    tap_and_wait(review.ids.crop_page, "the page cropped to the paper")
    assert current().pixels.shape[0] < scan.height - 60 and not review.ids.undo.disabled
    ui.screenshot("review_cleanup")

    tap_and_wait(review.ids.clean_borders, "the lid's edge left by the crop margin painted over")
    edges = current().pixels
    assert min(edges[:, :3].min(), edges[:3].min(), edges[-3:].min(), edges[:, -3:].min()) > 150
    ui.tap(review.ids.clean_borders)
    ui.wait(lambda: not review.busy and review.status == T["nothing_to_change"], what="nothing to change")

    tap_and_wait(review.ids.undo, "the border clean-up undone")
    tap_and_wait(review.ids.undo, "the crop undone")
    assert current().pixels.shape == scan.size[::-1] and review.status == T["undone"].format(index=1)
    tap_and_wait(review.ids.undo, "the straightening undone")
    assert np.array_equal(current().pixels, page.pixels) and review.ids.undo.disabled

    ui.app.session.replace(0, Capture(kind=SourceKind.SCANNED_DOCUMENT, dpi=DPI,
                                      pixels=np.ascontiguousarray(np.rot90(np.asarray(text), 2))))
    ui.pump(3)
    tap_and_wait(review.ids.auto_rotate, "the page turned upright")
    assert np.array_equal(current().pixels, np.asarray(text))
