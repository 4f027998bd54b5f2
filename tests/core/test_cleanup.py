"""Page clean-up (kiosk/cleanup.py) on generated pages whose truth is known: skew, paper box,
blank or not, orientation, dark borders; colour, grey, 1-bit and 16-bit pages."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from drivers.presets import check_preset, preset_cleanup
from kiosk import cleanup
from kiosk.capture import Capture, EncodedFormat, SourceKind
from kiosk.cleanup import CleanUp
from tests.support import pages

DPI = 150
ALL = CleanUp(deskew=True, auto_crop=True, drop_blank=True, auto_rotate=True, clean_borders=True)


def capture_of(image: Image.Image | np.ndarray, dpi: float | None = DPI) -> Capture:
    pixels = np.asarray(image) if isinstance(image, Image.Image) else image
    return Capture(SourceKind.SCANNED_DOCUMENT, pixels=np.ascontiguousarray(pixels), dpi=dpi)


@pytest.fixture(scope="module")
def text() -> Image.Image:
    return pages.text_page(DPI, np.random.default_rng(7))


@pytest.mark.parametrize("degrees", [-14.0, -7.3, -0.6, 0.35, 4.0, 11.5])
def test_deskew_finds_the_angle_and_straightens(text, degrees):
    page = capture_of(pages.skewed(text, degrees))
    plan = cleanup.plan(page, CleanUp(deskew=True))
    assert abs(plan.angle + degrees) <= 0.3
    straight = cleanup.clean(page, CleanUp(deskew=True))
    assert straight.pixels.shape == page.pixels.shape
    assert abs(cleanup.plan(straight, CleanUp(deskew=True)).angle) <= 0.3


def test_deskew_of_a_page_lying_on_its_side_and_of_colour(text):
    sideways = capture_of(np.rot90(np.asarray(pages.skewed(text.convert("RGB"), 3.0))))
    assert abs(cleanup.plan(sideways, CleanUp(deskew=True)).angle + 3.0) <= 0.3


def test_a_straight_page_and_a_page_without_paper_are_left_as_they_are(text):
    straight = capture_of(text)
    assert cleanup.clean(straight, CleanUp(deskew=True, clean_borders=True)) is straight
    film = capture_of(np.full((800, 600), 40, np.uint8))  # no bright paper: a film, a photo, a test pattern
    assert cleanup.clean(film, ALL) is film
    pdf = Capture(SourceKind.FILE_IMPORT, encoded=b"%PDF-1.4", encoded_format=EncodedFormat.PDF)
    assert cleanup.clean(pdf, ALL) is pdf


@pytest.mark.parametrize("degrees", [0.0, 5.0])
def test_auto_crop_finds_the_paper_on_a_dark_lid(text, degrees):
    scan, (left, top, right, bottom) = pages.on_dark_bed(text, (60, 90, 140, 40), degrees=degrees)
    plan = cleanup.plan(capture_of(scan), CleanUp(deskew=True, auto_crop=True))
    margin = 2 / 25.4 * DPI
    assert plan.box is not None
    for found, paper in zip(plan.box, (left - margin, top - margin, right + margin, bottom + margin)):
        assert abs(found - paper) <= 6, (plan.box, (left, top, right, bottom))
    cropped = cleanup.clean(capture_of(scan), CleanUp(deskew=True, auto_crop=True))
    grey = cropped.pixels
    assert grey.shape == (plan.box[3] - plan.box[1], plan.box[2] - plan.box[0])
    assert np.median(grey[grey.shape[0] // 2]) > 200  # paper, not lid


def test_auto_crop_leaves_a_page_that_fills_the_scan(text):
    assert cleanup.plan(capture_of(text), CleanUp(auto_crop=True)).box is None


def noise(seed: int, **kwargs) -> Image.Image:
    return pages.noise_back(DPI, np.random.default_rng(seed), **kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"holes": True}, {"show_through": False, "specks": 800, "sigma": 7.0},
                                    {"holes": True, "specks": 400}])
def test_noise_only_backs_are_blank(kwargs):
    page = capture_of(noise(3, **kwargs))
    assert cleanup.is_blank(page)
    assert cleanup.clean(page, CleanUp(drop_blank=True)) is None


def signed() -> Image.Image:
    page = noise(4, specks=100)
    pages.draw_signature(page, DPI, np.random.default_rng(5))
    return page


def stamped(colour) -> Image.Image:
    page = noise(6, specks=100).convert("RGB")
    pages.draw_stamp(page, DPI, diameter_mm=22, colour=colour)
    return page


@pytest.mark.parametrize("make", [signed, lambda: stamped((60, 60, 60)), lambda: stamped((215, 60, 60)),
                                  lambda: pages.text_page(DPI, np.random.default_rng(8), lines=2)])
def test_a_signature_a_stamp_or_a_few_lines_are_kept(make):
    page = capture_of(make())
    assert not cleanup.is_blank(page)
    assert cleanup.clean(page, CleanUp(drop_blank=True)) is not None


def test_blank_pages_in_one_bit_and_sixteen_bits():
    back, front = np.asarray(noise(9, show_through=False)), np.asarray(signed())
    assert cleanup.is_blank(capture_of(back > 128))
    assert not cleanup.is_blank(capture_of(front > 128))
    wide = Capture(SourceKind.SCANNED_DOCUMENT, pixels=front.astype(np.uint16) * 16, bits_stored=12, dpi=DPI)
    assert not cleanup.is_blank(wide)


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_auto_rotate_turns_text_upright(text, turns):
    # np.rot90 turns counter-clockwise: the page needs as many clockwise turns back.
    page = capture_of(np.rot90(np.asarray(text.convert("RGB")), turns))
    assert cleanup.plan(page, CleanUp(auto_rotate=True)).quarter_turns == turns
    upright = cleanup.clean(page, CleanUp(auto_rotate=True))
    assert np.array_equal(upright.pixels, np.asarray(text.convert("RGB")))


def test_auto_rotate_leaves_pages_with_too_little_text():
    one_line = pages.text_page(DPI, np.random.default_rng(2), lines=1)
    assert cleanup.plan(capture_of(np.rot90(np.asarray(one_line), 2)), CleanUp(auto_rotate=True)).quarter_turns == 0
    assert cleanup.plan(capture_of(signed()), CleanUp(auto_rotate=True)).quarter_turns == 0


def test_clean_borders_paints_dark_edges_with_paper(text):
    page = capture_of(pages.with_dark_edges(text, width_px=20))
    cleaned = cleanup.clean(page, CleanUp(clean_borders=True)).pixels
    assert cleaned[:, :25].min() > 150 and cleaned[:12].min() > 150 and cleaned[-5:, -20:].min() > 150
    inside = (slice(60, -60), slice(60, -60))
    assert np.array_equal(cleaned[inside], np.asarray(text)[inside])  # the text is untouched


def test_print_of_the_page_own_is_neither_border_nor_background(text):
    """A coloured letterhead band at the top edge, and dark bars inside the page (the demo scanner's)."""
    page = np.asarray(text.convert("RGB")).copy()
    page[:60] = (40, 110, 200)
    page[300:700, 100:-100] = 60
    steps = cleanup.plan(capture_of(page), CleanUp(auto_crop=True, clean_borders=True))
    assert steps.box is None and steps.border is None


def test_everything_at_once_on_a_colour_page_at_300_dpi():
    truth = pages.text_page(300, np.random.default_rng(11), colour=True)
    scan = pages.with_dark_edges(pages.skewed(truth, -6.0), width_px=50)
    page = capture_of(np.rot90(np.asarray(scan)), dpi=300)
    plan = cleanup.plan(page, ALL)
    assert not plan.blank and plan.quarter_turns == 1 and abs(plan.angle - 6.0) <= 0.3
    cleaned = cleanup.apply(page, plan)
    assert cleaned.pixels.shape == np.asarray(truth).shape
    assert abs(cleanup.plan(cleaned, CleanUp(deskew=True)).angle) <= 0.3
    assert cleanup.plan(cleaned, CleanUp(auto_rotate=True)).quarter_turns == 0


def test_the_cleaner_counts_left_out_pages(text):
    cleaner = cleanup.Cleaner(CleanUp(drop_blank=True))
    kept = [p for p in map(cleaner, [capture_of(text), capture_of(noise(1)), capture_of(noise(2))]) if p]
    assert len(kept) == 1 and cleaner.dropped == 2


def test_preset_keys():
    assert check_preset({"deskew": True, "auto_crop": False, "dpi": 200}) is None
    assert "true or false" in check_preset({"drop_blank": "yes"})
    assert "unknown setting" in check_preset({"deskw": True})
    assert preset_cleanup("Document") == {"deskew": True, "auto_crop": False, "drop_blank": True,
                                          "auto_rotate": False, "clean_borders": True}
    assert not any(preset_cleanup("film").values())
    tables = {"Document": {"drop_blank": False}, "Film": {}, "Photo": {}, "ID card": {"dpi": 600, "auto_crop": True}}
    assert preset_cleanup("Document", tables)["drop_blank"] is False
    own = preset_cleanup("id card", tables)
    assert own["auto_crop"] and own["deskew"]  # starts from Document's steps
    assert not any(preset_cleanup("nonesuch", tables).values())
