"""Generated A4 pages with known barcodes, as a 300 dpi scan of a hospital form gives them.

A page has lines of text, a label-sized barcode (zxing-cpp's writer) at a known place, a slight
rotation, blur and sensor noise; ``blank_page`` has the same without any barcode (text, a
photo-like patch). Everything is seeded: the same arguments give the same pixels.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

A4_300DPI = (2480, 3508)  # width, height

# Label sizes: the module (narrowest bar or cell) in pixels at 300 dpi, as printed by label
# printers on wristbands and specimen labels (0.25-0.5 mm), and what the format encodes well.
FORMATS = {
    "Code128": (3, 4),
    "Code39": (3, 4),
    "QRCode": (5, 7),
    "DataMatrix": (5, 7),
    "PDF417": (3, 4),
}


@dataclass(frozen=True)
class Page:
    pixels: np.ndarray  # H x W uint8 (gray) or H x W x 3 (RGB)
    text: str  # the barcode's content ("" for none)
    format: str  # FORMATS key, or ""


def symbol(text: str, fmt: str, module: int) -> np.ndarray:
    """The barcode alone (with its quiet zone), black on white, ``module`` pixels per module."""
    import zxingcpp

    barcode = zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, fmt))
    pixels = np.asarray(barcode.to_image(scale=module, add_quiet_zones=True), dtype=np.uint8)
    if fmt in ("Code128", "Code39", "PDF417"):
        # Linear symbols come out one module high per row: make them label height (about 10 mm).
        rows = max(pixels.shape[0], 120 if fmt != "PDF417" else pixels.shape[0])
        if pixels.shape[0] < rows:
            pixels = np.repeat(pixels[:1], rows, axis=0) if fmt != "PDF417" else pixels
    return pixels


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text(draw: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int, avoid: tuple | None) -> None:
    words = ["Patient", "referral", "consent", "report", "Dr.", "clinic", "date", "signature", "ward",
             "history", "findings", "1234", "0042", "follow-up", "imaging", "left", "right", "knee"]
    font = _font(38)
    y = 180
    while y < height - 200:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(6, 14)))
        box = (150, y, width - 150, y + 50)
        if avoid is None or box[3] < avoid[1] or box[1] > avoid[3]:
            draw.text((150, y), line, fill=rng.randint(0, 60), font=font)
        y += rng.randint(55, 90)


def _scan(image: Image.Image, rng: random.Random, angle: float, blur: float, noise: float) -> np.ndarray:
    """What the scanner makes of the paper: a slight rotation, optics blur, sensor noise (OpenCV: a
    page takes ~0.1 s, a tenth of Pillow's time)."""
    import cv2

    pixels = np.asarray(image)
    height, width = pixels.shape
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    pixels = cv2.warpAffine(pixels, turn, (width, height), flags=cv2.INTER_LINEAR, borderValue=255)
    if blur:
        pixels = cv2.GaussianBlur(pixels, (0, 0), blur)
    if noise:
        # One tile of noise repeated over the page: as random to a decoder, far cheaper to make.
        tile = np.random.default_rng(rng.randrange(2**32)).normal(0, noise, (509, 499)).astype(np.int16)
        reps = (height // tile.shape[0] + 1, width // tile.shape[1] + 1)
        pixels = np.clip(pixels + np.tile(tile, reps)[:height, :width], 0, 255).astype(np.uint8)
    return pixels


def page(text: str, fmt: str, seed: int = 0, *, angle: float | None = None, module: int | None = None,
         blur: float | None = None, noise: float | None = None, where: tuple[int, int] | None = None,
         size: tuple[int, int] = A4_300DPI) -> Page:
    """A page (A4 at 300 dpi unless ``size``) with one ``fmt`` barcode holding ``text`` among lines of text."""
    rng = random.Random(seed)
    width, height = size
    low, high = FORMATS[fmt]
    code = symbol(text, fmt, module or rng.randint(low, high))
    x, y = where or (rng.randint(150, width - code.shape[1] - 150), rng.randint(150, height // 3))
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    _text(draw, rng, width, height, (x, y - 60, x + code.shape[1], y + code.shape[0] + 60))
    image.paste(Image.fromarray(code), (x, y))
    pixels = _scan(image, rng, rng.uniform(-3, 3) if angle is None else angle,
                   rng.uniform(0.4, 1.0) if blur is None else blur, rng.uniform(2, 8) if noise is None else noise)
    return Page(pixels, text, fmt)


def blank_page(seed: int = 0, size: tuple[int, int] = A4_300DPI) -> Page:
    """A page without a barcode: text, and on every other page a photo-like patch."""
    rng = random.Random(seed)
    width, height = size
    image = Image.new("L", (width, height), 255)
    _text(ImageDraw.Draw(image), rng, width, height, None)
    if seed % 2:
        # A photo: smooth shapes and texture (a printed picture in a report).
        gen = np.random.default_rng(seed)
        h, w = min(900, height // 3), min(1200, width // 2)
        yy, xx = np.mgrid[0:h, 0:w]
        photo = 128 + 60 * np.sin(xx / rng.uniform(20, 80)) * np.cos(yy / rng.uniform(20, 80))
        photo = photo + gen.normal(0, 25, (h, w))
        image.paste(Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)),
                    (rng.randint(0, width - w), rng.randint(0, height - h)))
    return Page(_scan(image, rng, rng.uniform(-3, 3), rng.uniform(0.4, 1.0), rng.uniform(2, 8)), "", "")


def label_text(rng: random.Random, fmt: str) -> str:
    """What a hospital label carries: a patient ID, an accession number or a separator code."""
    kind = rng.choice(["PID", "ACC", "SEP"])
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 10)))
    if fmt == "Code39":
        return f"{kind}-{digits}"  # Code 39: capitals, digits and -.$/+% only
    return f"{kind}:{digits}"
