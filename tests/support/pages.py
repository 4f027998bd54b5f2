"""Generated scanned pages with known truth for the clean-up tests and benchmarks.

Text-like lines of random words (letters drawn with English frequencies, so
ascenders outnumber descenders as in real text), a signature scribble, a round
stamp, noise-only backs (scanner noise, show-through, dust, punch holes), dark
scanner borders, and pages turned by known angles.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
FREQUENCIES = np.array([12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4, 2.2, 2.0,
                        2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1])
PAPER = 244


def a4_size(dpi: float) -> tuple[int, int]:
    return int(round(8.27 * dpi)), int(round(11.69 * dpi))


def blank_paper(dpi: float, paper: int = PAPER) -> Image.Image:
    return Image.new("L", a4_size(dpi), paper)


def words(rng: np.random.Generator, count: int) -> str:
    out = []
    for _ in range(count):
        letters = rng.choice(list(LETTERS), size=int(rng.integers(2, 10)), p=FREQUENCIES / FREQUENCIES.sum())
        word = "".join(letters)
        out.append(word.capitalize() if rng.random() < 0.15 else word)
    return " ".join(out)


def draw_text(page: Image.Image, dpi: float, rng: np.random.Generator, lines: int | None = None,
              top_mm: float = 25.0, point: float = 11.0) -> None:
    """Left-aligned lines of random words, ragged right, 25 mm margins (``lines``: how many; None: a full page)."""
    draw = ImageDraw.Draw(page)
    size = int(round(point / 72 * dpi))
    font = ImageFont.truetype(FONT, size)
    left = int(25 / 25.4 * dpi)
    right = page.width - left
    y = int(top_mm / 25.4 * dpi)
    pitch = int(size * 1.5)
    count = 0
    while y + pitch < page.height - left and (lines is None or count < lines):
        text = words(rng, 30)
        while draw.textlength(text, font=font) > right - left:
            text = text.rsplit(" ", 1)[0]
        if rng.random() < 0.3:  # a paragraph's last line
            text = text[: max(5, int(len(text) * rng.uniform(0.2, 0.8)))]
        draw.text((left, y), text, fill=int(rng.integers(15, 50)), font=font)
        y += pitch
        count += 1


def draw_signature(page: Image.Image, dpi: float, rng: np.random.Generator, where: tuple[float, float] = (0.6, 0.8),
                   width_mm: float = 50.0) -> None:
    """A pen scribble ~``width_mm`` wide, strokes 0.5 mm, blue-black."""
    draw = ImageDraw.Draw(page)
    mm = dpi / 25.4
    x0, y0 = where[0] * page.width, where[1] * page.height
    t = np.linspace(0, 1, 400)
    xs = x0 + t * width_mm * mm + 3 * mm * np.sin(t * 37 + rng.uniform(0, 6))
    ys = y0 + 6 * mm * np.sin(t * 23 + rng.uniform(0, 6)) * np.sin(t * 5)
    colour = 30 if page.mode == "L" else (20, 30, 110)
    draw.line(list(zip(xs, ys)), fill=colour, width=max(1, int(0.5 * mm)))


def draw_stamp(page: Image.Image, dpi: float, where: tuple[float, float] = (0.7, 0.15), diameter_mm: float = 30.0,
               colour: int | tuple[int, int, int] = 90) -> None:
    """A round stamp: two rings and a word."""
    draw = ImageDraw.Draw(page)
    mm = dpi / 25.4
    cx, cy, r = where[0] * page.width, where[1] * page.height, diameter_mm / 2 * mm
    for radius in (r, r * 0.8):
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=colour, width=max(1, int(0.6 * mm)))
    font = ImageFont.truetype(FONT, int(4 * mm))
    draw.text((cx - r * 0.55, cy - 2 * mm), "PAID", fill=colour, font=font)


def noise_back(dpi: float, rng: np.random.Generator, show_through: bool = True, specks: int = 200,
               holes: bool = False, sigma: float = 4.0) -> Image.Image:
    """A duplex back holding nothing: paper, show-through of the front, dust specks, punch holes, noise."""
    page = blank_paper(dpi)
    if show_through:
        front = blank_paper(dpi, 0)
        draw_text(front, dpi, rng)
        ghost = np.asarray(front.transpose(Image.Transpose.FLIP_LEFT_RIGHT).filter(ImageFilter.GaussianBlur(dpi / 150)))
        # The front's ink seen through the paper: 15-35 grey levels darker where it is.
        depth = rng.uniform(15, 35)
        page = Image.fromarray((PAPER - depth * (1 - ghost / 255.0 * 0 - (ghost < 128))).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(page)
    mm = dpi / 25.4
    for _ in range(specks):
        x, y = rng.uniform(0, page.width), rng.uniform(0, page.height)
        r = rng.uniform(0.05, 0.4) * mm
        draw.ellipse((x - r, y - r, x + r, y + r), fill=int(rng.integers(10, 120)))
    if holes:  # two punch holes, 6 mm, 12 mm from the left edge, seen against a dark lid
        for fy in (0.35, 0.65):
            cx, cy, r = 12 * mm, fy * page.height, 3 * mm
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=25)
    pixels = np.asarray(page).astype(np.float32) + rng.normal(0, sigma, (page.height, page.width)).astype(np.float32)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def text_page(dpi: float, rng: np.random.Generator, lines: int | None = None, colour: bool = False) -> Image.Image:
    page = blank_paper(dpi)
    draw_text(page, dpi, rng, lines)
    return page.convert("RGB") if colour else page


def skewed(page: Image.Image, degrees: float) -> Image.Image:
    """The page turned ``degrees`` counter-clockwise inside the same scan window, corners paper-filled
    (a feeder's skew: the scanner sees paper around it)."""
    fill = PAPER if page.mode == "L" else (PAPER,) * 3
    return page.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=fill)


def on_dark_bed(page: Image.Image, margin_px: tuple[int, int, int, int], degrees: float = 0.0,
                dark: int = 30) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The page on a dark scanner lid: ``margin_px`` (left, top, right, bottom) of lid around it.
    Returns the scan and the paper's box in it (before any turn)."""
    left, top, right, bottom = margin_px
    fill = dark if page.mode == "L" else (dark,) * 3
    bed = Image.new(page.mode, (page.width + left + right, page.height + top + bottom), fill)
    bed.paste(page, (left, top))
    if degrees:
        bed = bed.rotate(degrees, resample=Image.Resampling.BILINEAR, center=(left + page.width / 2, top + page.height / 2),
                         fillcolor=fill)
    return bed, (left, top, left + page.width, top + page.height)


def with_dark_edges(page: Image.Image, width_px: int = 40, dark: int = 20) -> Image.Image:
    """A feeder scan's dark strips along the left and top edges, and a wedge at the bottom right."""
    out = page.copy()
    draw = ImageDraw.Draw(out)
    fill = dark if page.mode == "L" else (dark,) * 3
    draw.rectangle((0, 0, width_px, page.height), fill=fill)
    draw.rectangle((0, 0, page.width, width_px // 2), fill=fill)
    w, h = page.width, page.height
    draw.polygon([(w, h - 4 * width_px), (w, h), (w - 6 * width_px, h)], fill=fill)
    return out


def ink_share(page: Image.Image) -> float:
    grey = np.asarray(page.convert("L"))
    return float((grey < 128).mean())


def angle_error(a: float, b: float) -> float:
    return abs(math.remainder(a - b, 360))
