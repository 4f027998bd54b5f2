"""Demo devices, so the kiosk is fully usable with no hardware.

``demo:scanner`` scans the pages in ``assets/demo/`` (three A4 pages at 100
dpi, scaled to the requested resolution; ``?pages=N`` cycles through them for
a longer ADF batch) and, with the Film preset or the transparency source, a
16-bit film. ``demo:camera`` is a moving colour-bar test pattern at 30 fps;
``demo:camera?image=PATH`` shows that picture instead (e.g. a wristband held up to it).
Missing assets are rendered on the fly (``render_page``, ``render_film``;
``assets/make_demo_assets.py`` writes the committed copies).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import parse_qs

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from drivers.device import Capabilities, Device, DeviceInfo, Driver, Progress, ProgressCallback, Settings, scan_kind
from drivers.errors import NoDeviceError, OutOfPaperError
from drivers.live import LiveDevice
from kiosk.capture import Capture

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "demo"
A4_MM = (210.0, 297.0)
ASSET_DPI = 100
PAGE_COUNT = 3


def render_page(number: int, dpi: int = ASSET_DPI) -> Image.Image:
    """A gray A4 demo page: a title, a few paragraphs of bars and a boxed figure."""
    width, height = round(A4_MM[0] / 25.4 * dpi), round(A4_MM[1] / 25.4 * dpi)
    page = Image.new("L", (width, height), 250)
    draw = ImageDraw.Draw(page)
    unit = dpi / 100
    font = ImageFont.load_default(size=int(28 * unit))
    draw.text((60 * unit, 60 * unit), f"Kiosk demo page {number} of {PAGE_COUNT}", fill=20, font=font)
    y = 140 * unit
    for line in range(24):
        length = width - (120 + (line * 37 % 200)) * unit
        draw.rectangle((60 * unit, y, 60 * unit + length, y + 8 * unit), fill=90)
        y += 22 * unit
    box = (60 * unit, y + 20 * unit, width - 60 * unit, height - 80 * unit)
    draw.rectangle(box, outline=30, width=int(3 * unit))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    radius = min(box[2] - box[0], box[3] - box[1]) / 3
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=160 - 30 * number)
    return page


def render_film(width: int = 256, height: int = 320) -> np.ndarray:
    """A 16-bit gray demo film: a bright body on a dark background with soft gradients."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    body = np.exp(-(((x - width / 2) / (width * 0.32)) ** 2 + ((y - height / 2) / (height * 0.4)) ** 2))
    ribs = 0.15 * (np.sin(y / height * 40) > 0.6) * body
    lungs = 0.5 * np.exp(-(((np.abs(x - width / 2) - width * 0.17) / (width * 0.1)) ** 2
                           + ((y - height * 0.42) / (height * 0.2)) ** 2))
    image = np.clip(0.08 + 0.8 * body + ribs - lungs, 0, 1)
    return (image * 65535).astype(np.uint16)


def load_page(number: int) -> Image.Image:
    path = ASSETS / f"page-{number}.png"
    return Image.open(path).convert("L") if path.is_file() else render_page(number)


def load_film() -> np.ndarray:
    path = ASSETS / "film.png"
    if path.is_file():
        with Image.open(path) as image:
            return np.asarray(image, dtype=np.uint16)
    return render_film()


class DemoDriver(Driver):
    scheme = "demo"
    title = "demo devices"

    def discover(self) -> list[DeviceInfo]:
        return [
            DeviceInfo("demo:scanner", "Demo scanner (flatbed, feeder, film)", "scanner", "no hardware needed"),
            DeviceInfo("demo:camera", "Demo camera (test pattern, 30 fps)", "camera", "no hardware needed"),
        ]

    def open(self, target: str, options: Mapping[str, Any] | None = None) -> Device:
        name, _, query = target.partition("?")
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        options = dict(options or {})
        if name == "scanner":
            return DemoScanner(self.discover()[0], pages=int(params.get("pages", PAGE_COUNT)))
        if name == "camera":
            return DemoCamera(self.discover()[1], fps=float(params.get("fps", 30)), image=params.get("image", ""),
                              stall_timeout=float(options.get("stall_timeout", 1.5)))
        raise NoDeviceError(f"there is no demo device {name!r}", "use demo:scanner or demo:camera")


class DemoScanner(Device):
    """Flatbed, a feeder holding ``pages`` pages, and a transparency unit for film."""

    def __init__(self, info: DeviceInfo, pages: int = PAGE_COUNT) -> None:
        super().__init__(info)
        self.pages = pages
        self.settings = Settings(mode="gray", depth=8, dpi=150, source="flatbed")

    def capabilities(self) -> Capabilities:
        return Capabilities(modes=("color", "gray"), depths=(8, 16), resolutions=(75.0, 600.0),
                            sources=("flatbed", "adf", "transparency"), area_mm=A4_MM)

    def configure(self, settings: Settings) -> Settings:
        dpi = settings.dpi
        # Clamp like real hardware does, and report the value used.
        effective = self.settings.merged(**{k: getattr(settings, k) for k in ("mode", "depth", "source")},
                                         dpi=min(600.0, max(75.0, float(dpi))) if dpi else None)
        self.settings = effective.merged(film=settings.film, photo=settings.photo)
        if self.settings.film:
            self.settings = self.settings.merged(source="transparency")
        return self.settings

    def _scan(self, page: int, progress: ProgressCallback | None) -> Capture:
        s = self.settings
        dpi = s.dpi or 150
        film = s.film or s.source == "transparency"
        if film:
            base = Image.fromarray(load_film())
            scale = dpi / 150  # the demo film is 43 x 54 mm at 150 dpi
        else:
            base = load_page(page % PAGE_COUNT + 1)
            scale = dpi / ASSET_DPI
        size = (round(base.width * scale), round(base.height * scale))
        steps = 8
        for step in range(steps):  # report progress and honour cancel like a real scan
            self.check_cancelled()
            if progress:
                progress(Progress(page, step / steps, f"page {page + 1}"))
        image = np.asarray(base.resize(size, Image.Resampling.BILINEAR))
        self.check_cancelled()
        if film:
            pixels = image if s.depth == 16 else (image >> 8).astype(np.uint8)
        else:
            pixels = image.astype(np.uint16) * 257 if s.depth == 16 and s.mode != "color" else image
            if s.mode == "color":
                pixels = np.repeat(image[:, :, None], 3, axis=2)
                pixels[: size[1] // 20, :, 0] = 40  # a coloured header band, so colour shows
                pixels[: size[1] // 20, :, 1] = 110
                pixels[: size[1] // 20, :, 2] = 200
        if progress:
            progress(Progress(page, 1.0, f"page {page + 1}"))
        return Capture(kind=scan_kind(s, pixels.itemsize * 8), pixels=np.ascontiguousarray(pixels),
                       bits_stored=pixels.itemsize * 8, dpi=dpi, index=page, source=self.info.uri,
                       metadata={"source": s.source, "mode": s.mode, "demo": True})

    def acquire(self, progress: ProgressCallback | None = None) -> Capture:
        self._cancel.clear()
        return self._scan(0, progress)

    def batch(self, progress: ProgressCallback | None = None) -> Iterator[Capture]:
        if self.settings.source != "adf":
            yield self.acquire(progress)
            return
        self._cancel.clear()
        if self.pages <= 0:
            raise OutOfPaperError("demo scanner: the document feeder is empty", "load pages into the feeder")
        for page in range(self.pages):
            yield self._scan(page, progress)


class DemoCamera(LiveDevice):
    """Moving colour bars with a bouncing square and a frame counter, paced at ``fps``; or a still
    ``image`` (a file) fitted into the frame, with the counter."""

    def __init__(self, info: DeviceInfo, fps: float = 30.0, width: int = 1280, height: int = 720,
                 image: str = "", **kwargs: Any) -> None:
        super().__init__(info, **kwargs)
        self.frame_rate = fps
        self.width, self.height = width, height
        self.image = image
        self._bars = self._make_bars()
        self._count = 0
        self._next = 0.0

    def _make_bars(self) -> np.ndarray:
        if self.image:
            return self._fitted_image()
        colours = np.array([[235, 235, 235], [235, 235, 16], [16, 235, 235], [16, 235, 16],
                            [235, 16, 235], [235, 16, 16], [16, 16, 235], [16, 16, 16]], np.uint8)
        index = (np.arange(self.width) * len(colours) // self.width)
        return np.ascontiguousarray(np.broadcast_to(colours[index][None], (self.height, self.width, 3)))

    def _fitted_image(self) -> np.ndarray:
        try:
            with Image.open(self.image) as picture:
                picture = picture.convert("RGB")
                picture.thumbnail((self.width, self.height))
        except OSError as exc:
            raise NoDeviceError(f"the demo camera cannot show {self.image} ({exc})", "name an image file") from None
        frame = np.full((self.height, self.width, 3), 255, np.uint8)
        top, left = (self.height - picture.height) // 2, (self.width - picture.width) // 2
        frame[top:top + picture.height, left:left + picture.width] = np.asarray(picture)
        return frame

    def capabilities(self) -> Capabilities:
        return Capabilities(frame_sizes=((640, 480), (1280, 720), (1920, 1080)),
                            frame_rates=(self.frame_rate or 30.0,), pixel_formats=("RGB3",), preview=True)

    def configure(self, settings: Settings) -> Settings:
        if settings.width and settings.height and self._thread is None:
            self.width, self.height = settings.width, settings.height
            self._bars = self._make_bars()
        if settings.fps and self._thread is None:
            self.frame_rate = float(settings.fps)
        self.settings = Settings(width=self.width, height=self.height, fps=self.frame_rate, fourcc="RGB3")
        return self.settings

    def _open_source(self) -> None:
        self._next = time.monotonic()

    def _close_source(self) -> None:
        pass

    def _read(self) -> np.ndarray | None:
        self._next += 1.0 / (self.frame_rate or 30.0)
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self._next = time.monotonic()  # fell behind: do not burst to catch up
        self._count += 1
        if self.image:  # a still picture: only the counter moves
            frame = self._bars.copy()
            frame[-12:, :16 * 16] = 0
        else:
            frame = np.roll(self._bars, self._count * 4, axis=1)
            size = self.height // 6
            x = (self._count * 7) % (self.width - size)
            y = abs((self._count * 5) % (2 * (self.height - size)) - (self.height - size))
            frame[y:y + size, x:x + size] = (255, 140, 0)
        # A binary frame counter along the bottom edge: lets tests see that frames move.
        for bit in range(16):
            if self._count >> bit & 1:
                frame[-12:, bit * 16:bit * 16 + 12] = 255
        return frame
