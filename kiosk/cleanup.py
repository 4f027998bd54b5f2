"""Page clean-up for scanned documents: deskew, crop to the page, blank pages, orientation, borders.

``plan(capture, options)`` measures a page on a grey copy at about 100 dpi
(fast: an A4 300 dpi page has 12 times fewer pixels there) and ``apply``
changes the full-resolution pixels once; ``clean`` does both and returns None
for a blank page that is to be left out. numpy and Pillow only. Like
``kiosk.processing``, nothing here knows about sessions, DICOM or the UI.

What the estimates rest on (docs/drivers.md, "Page clean-up"):

- paper is the bright majority of the page (``paper`` below: the 90th
  percentile of grey); a page without bright paper (a film, a photo, a solid
  test pattern) is left exactly as it is;
- the scanner's background (lid, feeder) is grey or black, darker than 40 % of the paper's
  brightness and touches the image's edges: that is what auto-crop cuts away
  and border clean-up paints over; a white lid cannot be told from paper;
- ink is darker than 60 % of the paper's brightness, or strongly coloured
  (a red or blue stamp); show-through from the back is lighter and is not ink;
- text lines are straight and horizontal on an upright page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops

from kiosk.capture import Capture, EncodedFormat
from kiosk.processing import pixels_of, turn

ANALYSIS_DPI = 100.0  # the resolution the estimates work at
A4_LONG_INCH = 11.69  # a page without a dpi is taken to be A4 (its long side)
MAX_SKEW = 15.0  # degrees, either way
PAPER_MIN = 100  # grey below which there is no paper to clean (film, photo, test pattern)
INK = 0.6  # ink is darker than this fraction of the paper's grey
BACKGROUND = 0.4  # the scanner's background (lid, feeder, shadows) is darker than this fraction
SATURATED = 80  # max - min channel difference of coloured ink (stamps)
CROP_MARGIN_MM = 2.0
BORDER_MAX = 0.12  # border clean-up reaches at most this fraction of a side inward
BLANK_EDGE_MM = 4.0  # ink this close to the page's edge is edge trouble, not content
SPECK_MM2 = 3.0  # ink blobs smaller than this (dust, specks, two or three of them touching) are noise
MARK_MM = 6.0  # a blob this long (a signature, a stamp, a word) is content, however little ink it has,
MARK_MM2 = 4.0  # if it has this much: a chain of specks is long too, but thin on ink
MIN_INK = 0.0005  # ... and so is this much ink (0.05 % of the page) in blobs above speck size
HOLE_MM = (4.0, 10.5)  # punch holes (6-8 mm, ISO 838): round, filled, this wide in 1 mm cells, near an edge
HOLE_EDGE_MM = 25.0
CELL_MM = 1.0  # blobs are found on a grid of cells this size


@dataclass(frozen=True)
class CleanUp:
    """Which clean-up steps to run on scanned pages (each off unless asked for)."""

    deskew: bool = False
    auto_crop: bool = False
    drop_blank: bool = False
    auto_rotate: bool = False
    clean_borders: bool = False

    @property
    def any(self) -> bool:
        return any((self.deskew, self.auto_crop, self.drop_blank, self.auto_rotate, self.clean_borders))

    @classmethod
    def of(cls, steps: dict[str, bool]) -> "CleanUp":
        """From preset keys or CLI flags by their names (``deskew``, ``auto_crop`` ...)."""
        return cls(**{key: bool(value) for key, value in steps.items()})


STEPS = tuple(CleanUp.__dataclass_fields__)  # the step names: preset keys and (with dashes) CLI flags


@dataclass(frozen=True)
class Plan:
    """What ``apply`` will do to a page, measured by ``plan``.

    ``angle``: degrees counter-clockwise to turn the page straight; ``box``:
    (left, top, right, bottom) in pixels of the straightened page, or None;
    ``quarter_turns``: clockwise quarter turns that bring its text upright;
    ``border``: the analysis-sized mask (of the cropped page) to paint with
    ``paper`` (the paper's colour in the page's sample values); ``blank``: no content found; ``ink``: the content's share of the page.
    """

    angle: float = 0.0
    box: tuple[int, int, int, int] | None = None
    quarter_turns: int = 0
    border: np.ndarray | None = None
    blank: bool = False
    ink: float = 0.0
    paper: tuple[int, ...] = (255,)
    fill: tuple[int, ...] = (255,)  # the corners a turn uncovers: the scanner's dark background, or paper

    @property
    def changes(self) -> bool:
        return bool(self.angle or self.box or self.quarter_turns or self.border is not None)


def clean(capture: Capture, options: CleanUp) -> Capture | None:
    """The page cleaned as ``options`` say, or None if it is blank and ``options.drop_blank``."""
    if not options.any or capture.pixels is None and capture.encoded_format is EncodedFormat.PDF:
        return capture  # a PDF has no pixels to clean
    steps = plan(capture, options)
    if steps.blank and options.drop_blank:
        return None
    return apply(capture, steps)


def is_blank(capture: Capture) -> bool:
    """True if the page holds nothing but noise: specks, show-through, punch holes, dark edges."""
    return plan(capture, CleanUp(drop_blank=True)).blank


# -- measuring --------------------------------------------------------------------------------
def plan(capture: Capture, options: CleanUp) -> Plan:
    """Measure what the chosen steps would change, on a small grey copy of the page."""
    pixels = pixels_of(capture)
    height, width = pixels.shape[:2]
    dpi = capture.dpi or max(height, width) / A4_LONG_INCH
    factor = max(1, int(dpi // ANALYSIS_DPI))  # analysis at 100-200 dpi
    small = _small(pixels, capture.effective_bits, factor)
    grey = np.asarray(small.convert("L")) if small.mode != "L" else np.asarray(small)
    paper_grey = float(np.percentile(grey[::2, ::2], 90))
    if paper_grey < PAPER_MIN:
        return Plan()  # no paper: nothing to clean, and never blank
    paper = _paper_colour(pixels, factor, grey, paper_grey)
    mm = dpi / factor / 25.4  # analysis pixels per mm
    # The corners a turn uncovers continue what the edges show: a dark lid (so that auto-crop and
    # border clean-up still find it along the whole edge) or paper.
    ring = np.concatenate((grey[0], grey[-1], grey[:, 0], grey[:, -1]))
    lid = float(np.mean(ring < paper_grey * BACKGROUND)) >= 0.75  # dark all round (a feeder's edge strip is not)
    fill = _edge_colour(pixels) if lid else paper
    angle = 0.0
    if options.deskew:
        ink = (grey < paper_grey * INK) & ~_edge_runs(grey < paper_grey * BACKGROUND)
        angle = skew_angle(ink)
        if angle:
            grey = _rotate_small(grey, angle, float(np.median(ring)) if lid else paper_grey)
    # A scanner's background is grey or black; a coloured band at the edge is the page's own (a letterhead).
    coloured = _saturated(small, angle)
    dark = (grey < paper_grey * BACKGROUND) & ~coloured
    box_small = _paper_box(_edge_runs(dark), mm) if options.auto_crop else None
    if box_small is not None:
        x0, y0, x1, y1 = box_small
        grey, dark, coloured = (a[y0:y1, x0:x1] for a in (grey, dark, coloured))
    border = _edge_runs(dark, BORDER_MAX)
    blank, share, turns = False, 0.0, 0
    if options.drop_blank or options.auto_rotate:
        ink = ((grey < paper_grey * INK) | coloured) & ~_grow(border, 1)
        blank, share = _blank(ink, mm) if options.drop_blank else (False, float(ink.mean()))
        turns = orientation(ink) if options.auto_rotate and not blank else 0
    box = None
    if box_small is not None:
        x0, y0, x1, y1 = (v * factor for v in box_small)
        box = (x0, y0, min(x1, width), min(y1, height))
    return Plan(angle=angle, box=box, quarter_turns=turns,
                border=border if options.clean_borders and border.any() else None,
                blank=blank, ink=share, paper=paper, fill=fill)


def _small(pixels: np.ndarray, bits: int, factor: int) -> Image.Image:
    """An 8-bit copy (grey or RGB) reduced by ``factor`` by averaging (which melts away sub-pixel dust)."""
    if pixels.dtype == np.bool_:
        image = Image.fromarray(pixels.astype(np.uint8) * 255)
    elif pixels.dtype == np.uint16:
        image = Image.fromarray((pixels >> max(bits - 8, 0)).clip(0, 255).astype(np.uint8))
    else:
        image = Image.fromarray(pixels)
    return image.reduce(factor) if factor > 1 else image


def _paper_colour(pixels: np.ndarray, factor: int, grey: np.ndarray, paper_grey: float) -> tuple[int, ...]:
    """The paper's colour in the page's own sample values (fills rotated corners and borders)."""
    if pixels.dtype == np.bool_:
        return (1,)
    step = factor * 4
    sample = pixels[::step, ::step]
    near = np.abs(grey[::4, ::4][:sample.shape[0], :sample.shape[1]].astype(np.int16) - paper_grey) <= 12
    sample = sample[:near.shape[0], :near.shape[1]][near]
    if not len(sample):
        return (int(paper_grey),) * (3 if pixels.ndim == 3 else 1)
    return tuple(int(v) for v in np.atleast_1d(np.median(sample, axis=0)))


def _edge_colour(pixels: np.ndarray) -> tuple[int, ...]:
    """The median colour of the image's outermost rows and columns, in its own sample values."""
    if pixels.dtype == np.bool_:
        return (0,)
    ring = np.concatenate((pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]))
    return tuple(int(v) for v in np.atleast_1d(np.median(ring, axis=0)))


def _saturated(small: Image.Image, angle: float) -> np.ndarray:
    """Strongly coloured pixels (a red stamp may be as light as show-through in grey)."""
    if small.mode != "RGB":
        return np.zeros((small.height, small.width), bool)
    if angle:
        small = small.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(255, 255, 255))
    red, green, blue = small.split()  # channel max - min in C: numpy's reduce over 3 samples is slow
    chroma = ImageChops.subtract(ImageChops.lighter(ImageChops.lighter(red, green), blue),
                                 ImageChops.darker(ImageChops.darker(red, green), blue))
    return np.asarray(chroma) > SATURATED


def _rotate_small(grey: np.ndarray, angle: float, fill: float) -> np.ndarray:
    return np.asarray(Image.fromarray(grey).rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=int(fill)))


def skew_angle(ink: np.ndarray, limit: float = MAX_SKEW) -> float:
    """Degrees counter-clockwise that make the ink's lines horizontal (or vertical), 0 if unsure.

    Projection profiles: the ink pixels are projected onto a line at each
    candidate angle; where the text lines are straight, the profile has the
    sharpest peaks and gaps, i.e. the largest sum of squares. Coarse 0.5 degree
    steps, then 0.05 degree steps around the best, then a parabola through the
    three best scores.
    """
    ys, xs = np.nonzero(ink)
    if len(xs) < 200:
        return 0.0
    if len(xs) > 60000:  # a sample is as good and keeps this fast
        pick = np.random.default_rng(0).choice(len(xs), 60000, replace=False)
        ys, xs = ys[pick], xs[pick]
    # Jitter within each pixel: on the bare grid the angle 0 would win by aliasing alone
    # (its projection lands every pixel exactly on a row; any other angle smears them).
    jitter = np.random.default_rng(1).uniform(-0.5, 0.5, (2, len(xs)))
    xs = xs + jitter[0] - ink.shape[1] / 2
    ys = ys + jitter[1] - ink.shape[0] / 2

    reach = int(math.hypot(*ink.shape)) + 1  # keeps every projected row index positive

    def score(degrees: float, along: np.ndarray, across: np.ndarray) -> float:
        rows = (along - across * math.tan(math.radians(degrees)) + reach).astype(np.int64)
        counts = np.bincount(rows)
        return float(np.dot(counts, counts))

    coarse = np.arange(-limit, limit + 0.25, 0.5)
    best_ratio, best, axes = 0.0, 0.0, (ys, xs)
    for along, across in ((ys, xs), (xs, -ys)):  # text lines across the page, or (turned) down it
        scores = np.array([score(a, along, across) for a in coarse])
        ratio = scores.max() / np.median(scores)  # how much one angle stands out
        if ratio > best_ratio:
            best_ratio, best, axes = ratio, float(coarse[int(np.argmax(scores))]), (along, across)
    if best_ratio < 1.05:
        return 0.0  # no lines to go by
    fine = np.arange(best - 0.5, best + 0.5001, 0.05)
    scores = np.array([score(a, *axes) for a in fine])
    i = int(np.argmax(scores))
    angle = float(fine[i])
    if 0 < i < len(fine) - 1:
        left, mid, right = scores[i - 1:i + 2]
        bend = left - 2 * mid + right
        if bend < 0:
            angle += 0.05 * 0.5 * (left - right) / bend
    # Rows run downward, so the slope found is already Pillow's (counter-clockwise) turn back.
    return round(angle, 2) if abs(angle) > 0.05 else 0.0


def _edge_runs(dark: np.ndarray, reach: float = 1.0) -> np.ndarray:
    """Dark pixels joined to the image's edge by a straight run of dark pixels (rows and columns),
    at most ``reach`` of the side inward: the scanner's background and the dark edges of a scan."""
    height, width = dark.shape
    mask = np.zeros_like(dark)
    for grid, flip in ((dark, False), (dark[:, ::-1], True)):
        runs = np.logical_and.accumulate(grid, axis=1)
        runs[:, int(width * reach) + 1:] = False
        mask |= runs[:, ::-1] if flip else runs
    for grid, flip in ((dark, False), (dark[::-1], True)):
        runs = np.logical_and.accumulate(grid, axis=0)
        runs[int(height * reach) + 1:] = False
        mask |= runs[::-1] if flip else runs
    return mask


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """The mask widened by ``steps`` pixels each way (the grey rim between background and paper)."""
    grown = mask.copy()
    for _ in range(steps):
        grown[1:] |= grown[:-1].copy()
        grown[:-1] |= grown[1:].copy()
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
    return grown


def _paper_box(background: np.ndarray, mm: float) -> tuple[int, int, int, int] | None:
    """The paper's box (left, top, right, bottom, analysis pixels) with a small margin, or None when
    the paper fills the image (nothing to cut) or cannot be found. ``background``: the scanner's, the
    dark reaching in from the image's edges (dark print inside the page is not)."""
    paper = ~background
    rows = _longest_run(paper.mean(axis=1) > 0.5)
    cols = _longest_run(paper.mean(axis=0) > 0.5)
    if rows is None or cols is None:
        return None
    margin = int(round(CROP_MARGIN_MM * mm))
    height, width = background.shape
    box = (max(0, cols[0] - margin), max(0, rows[0] - margin),
           min(width, cols[1] + margin), min(height, rows[1] + margin))
    if (box[2] - box[0]) * (box[3] - box[1]) < 0.1 * width * height:
        return None  # not a page: a small light patch on a dark image
    if box == (0, 0, width, height):
        return None
    return box


def _longest_run(flags: np.ndarray) -> tuple[int, int] | None:
    """(start, end) of the longest run of True values, or None."""
    if not flags.any():
        return None
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[::2], edges[1::2]
    longest = int(np.argmax(ends - starts))
    return int(starts[longest]), int(ends[longest])


def _blank(ink: np.ndarray, mm: float) -> tuple[bool, float]:
    """Whether the ink is noise only, and the content's share of the page.

    Ink is gathered into blobs on a grid of 1 mm cells; a blob is dropped as
    noise when it is a speck (under 3 mm² of ink) or a punch hole (a filled
    round blob 4-10 mm wide within 25 mm of an edge). The page holds content if
    any remaining blob is at least 6 mm long with 4 mm² of ink (a signature, a
    stamp, a word) or all of them together cover 0.05 % of it.
    """
    height, width = ink.shape
    edge = int(round(BLANK_EDGE_MM * mm))
    ink = ink.copy()
    ink[:edge], ink[height - edge:], ink[:, :edge], ink[:, width - edge:] = False, False, False, False
    total = float(ink.mean())
    if total > 0.02:
        return False, total  # 2 % of the page is ink: text, not noise
    cell = max(1, int(round(CELL_MM * mm)))
    rows, cols = height // cell, width // cell
    counts = ink[:rows * cell, :cols * cell].reshape(rows, cell, cols, cell).sum(axis=(1, 3))
    labels = _label(counts > 0)
    if not labels.any():
        return True, 0.0
    ids, where = np.unique(labels[labels > 0], return_inverse=True)
    ink_of = np.bincount(where, weights=counts[labels > 0])
    ys, xs = np.nonzero(labels)
    kept = 0.0
    for index in range(len(ids)):
        member = where == index
        y0, y1 = ys[member].min(), ys[member].max() + 1
        x0, x1 = xs[member].min(), xs[member].max() + 1
        area_mm2 = ink_of[index] / mm / mm
        if area_mm2 < SPECK_MM2:
            continue
        long_mm, short_mm = max(y1 - y0, x1 - x0) * cell / mm, min(y1 - y0, x1 - x0) * cell / mm
        near_edge = min(y0 * cell, x0 * cell, height - y1 * cell, width - x1 * cell) / mm < HOLE_EDGE_MM
        cells = int(member.sum())
        # A hole fills most cells of its box and most of each cell; a ring stamp or a scribble does not.
        filled = cells / ((y1 - y0) * (x1 - x0)) > 0.5 and ink_of[index] / (cells * cell * cell) > 0.5
        if near_edge and HOLE_MM[0] <= short_mm <= long_mm <= HOLE_MM[1] and filled:
            continue
        if long_mm >= MARK_MM and area_mm2 >= MARK_MM2:
            return False, max(total, ink_of[index] / ink.size)
        kept += ink_of[index]
    share = kept / ink.size
    return share < MIN_INK, share


def _label(mask: np.ndarray) -> np.ndarray:
    """8-connected components of a small mask: each True cell gets its blob's largest index."""
    labels = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)
    while True:
        padded = np.pad(labels, 1)
        grown = labels.copy()
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                np.maximum(grown, padded[dy:dy + mask.shape[0], dx:dx + mask.shape[1]], out=grown)
        grown *= mask
        if np.array_equal(grown, labels):
            return labels
        labels = grown


def orientation(ink: np.ndarray) -> int:
    """Clockwise quarter turns (0-3) that bring the page's text upright, 0 when it cannot tell.

    Text lines run across an upright page: the row profile of its ink has
    sharper peaks than the column profile, or else the page lies on its side.
    Then up from down: Latin-script lines carry more ink above their x-height
    band (ascenders, capitals) than below it (descenders), and left-aligned
    lines start at the same place while their ends are ragged.
    """
    if ink.mean() < 0.002:
        return 0
    rows, cols = _peakiness(ink.sum(axis=1)), _peakiness(ink.sum(axis=0))
    if max(rows, cols) < 0.5 or abs(rows - cols) < 0.2 * max(rows, cols):
        return 0  # no clear lines either way: leave it
    sideways = cols > rows
    upright = np.rot90(ink, k=-1) if sideways else ink  # turned clockwise: lines across
    vote = _upright_vote(upright)
    if vote == 0:
        return 0
    if sideways:
        return 1 if vote > 0 else 3
    return 0 if vote > 0 else 2


def _peakiness(profile: np.ndarray) -> float:
    """How much a profile alternates between full and empty (its spread relative to its mean)."""
    profile = profile.astype(np.float64)
    inside = profile[np.flatnonzero(profile)[0]:np.flatnonzero(profile)[-1] + 1] if profile.any() else profile
    return float(inside.std() / inside.mean()) if inside.size and inside.mean() else 0.0


def _upright_vote(ink: np.ndarray) -> int:
    """+1 if the lines' ink leans above their core (upright), -1 if below (upside down), 0 if unsure."""
    profile = ink.sum(axis=1).astype(np.float64)
    lines = _text_lines(profile)
    if len(lines) < 3:
        return 0
    above = below = 0.0
    starts, ends = [], []
    for top, bottom in lines:
        band = profile[top:bottom]
        core = np.flatnonzero(band >= 0.5 * band.max())
        above += band[:core[0]].sum()
        below += band[core[-1] + 1:].sum()
        columns = np.flatnonzero(ink[top:bottom].any(axis=0))
        starts.append(columns[0])
        ends.append(columns[-1])
    lean = (above - below) / max(above + below, 1.0)
    ragged = float(np.std(ends) - np.std(starts)) / max(ink.shape[1], 1)  # > 0: left-aligned when upright
    evidence = lean + 2 * ragged
    if abs(evidence) < 0.1:
        return 0
    return 1 if evidence > 0 else -1


def _text_lines(profile: np.ndarray) -> list[tuple[int, int]]:
    """(top, bottom) row ranges of the text lines in a row profile."""
    on = profile > 0.1 * np.percentile(profile[profile > 0], 90) if profile.any() else profile > 0
    padded = np.concatenate(([False], on, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a >= 3]


# -- applying ----------------------------------------------------------------------------------
def apply(capture: Capture, steps: Plan) -> Capture:
    """The page changed as ``steps`` say, at full resolution (the capture itself if nothing changes)."""
    if not steps.changes:
        return capture
    pixels = pixels_of(capture)
    if steps.angle:
        pixels = _rotate_full(pixels, steps.angle, steps.fill)
    if steps.box is not None:
        x0, y0, x1, y1 = steps.box
        pixels = pixels[y0:y1, x0:x1]
    if steps.border is not None:
        pixels = _paint(pixels, steps.border, steps.paper)
    if steps.quarter_turns:
        pixels = turn(pixels, steps.quarter_turns)
    return capture.with_pixels(np.ascontiguousarray(pixels))


def _rotate_full(pixels: np.ndarray, angle: float, fill: tuple[int, ...]) -> np.ndarray:
    bilinear = Image.Resampling.BILINEAR
    if pixels.dtype == np.bool_:
        turned = Image.fromarray(pixels.astype(np.uint8) * 255).rotate(angle, resample=bilinear,
                                                                       fillcolor=255 * fill[0])
        return np.asarray(turned) >= 128
    if pixels.dtype == np.uint16:
        turned = Image.fromarray(pixels.astype(np.float32), "F").rotate(angle, resample=bilinear,
                                                                       fillcolor=float(fill[0]))
        return np.asarray(turned).round().astype(np.uint16)
    colour = fill if pixels.ndim == 3 else fill[0]
    return np.asarray(Image.fromarray(pixels).rotate(angle, resample=bilinear, fillcolor=colour))


def _paint(pixels: np.ndarray, border: np.ndarray, paper: tuple[int, ...]) -> np.ndarray:
    """``pixels`` with the (analysis-sized) border mask filled with the paper's colour."""
    height, width = pixels.shape[:2]
    mask = Image.fromarray(_grow(border, 1).astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
    full = np.asarray(mask) > 0
    out = pixels.copy()
    if pixels.dtype == np.bool_:
        out[full] = True
    else:
        out[full] = paper if pixels.ndim == 3 else paper[0]
    return out


class Cleaner:
    """Cleans the pages of a batch one by one and counts the blank ones left out."""

    def __init__(self, options: CleanUp) -> None:
        self.options = options
        self.dropped = 0

    def __call__(self, capture: Capture) -> Capture | None:
        cleaned = clean(capture, self.options)
        if cleaned is None:
            self.dropped += 1
        return cleaned
