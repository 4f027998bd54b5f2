"""The wristband reader: the camera's live picture in a card, frames read for a barcode off the UI thread.

"Scan wristband" on the patient screen opens it. A reader thread opens the camera
(``Services.wristband_camera``), keeps the newest frame for the preview (scaled as the
Acquire screen's preview is, ``acquire.fit``) and reads each frame it gets with
``kiosk.barcodes.read_frame``; the first text found goes to ``on_read`` on the UI thread,
the card closes and the camera with it. Cancel, or ``TIMEOUT`` seconds without a
barcode, end it too.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from kivy.clock import Clock
from kivy.properties import StringProperty
from kivy.uix.modalview import ModalView

from kiosk.errors import KioskError
from kiosk.ui.screens.acquire import fit
from kiosk.ui.strings import T
from kiosk.ui.widgets.thumbs import texture_from

TIMEOUT = 30.0  # seconds without a barcode before the card gives up


def first_barcode(frames: Any, stop: threading.Event, timeout: float = TIMEOUT,
                  shown: Callable[[Any], None] | None = None) -> str:
    """The text of the first barcode on ``frames`` (``LiveDevice.frames()``), each handed to ``shown``
    first; "" when ``stop`` is set or ``timeout`` passes."""
    from kiosk.barcodes import read_frame

    deadline = time.monotonic() + timeout
    for frame in frames:
        if stop.is_set() or time.monotonic() > deadline:
            return ""
        if shown is not None:
            shown(frame.pixels)
        found = read_frame(frame.pixels)
        if found:
            return found[0].text
    return ""


class WristbandCard(ModalView):
    """The camera's picture until a barcode is read (``on_read(text)``), Cancel or the timeout."""

    status = StringProperty("")

    def __init__(self, services: Any, on_read: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.services, self.on_read = services, on_read
        self._stop = threading.Event()
        self._frame: Any = None
        self._seq = self._shown = 0
        self._texture: Any = None
        self._event: Any = None
        self._size = (960, 540)  # the preview's size, read on the UI thread as it is drawn

    def on_open(self) -> None:
        self.status = T["busy"]
        stop = self._stop

        def shown(pixels: Any) -> None:
            self._frame, self._seq = fit(pixels, self._size), self._seq + 1

        def reader() -> None:
            text, problem = "", ""
            try:
                uri = self.services.wristband_camera()
                if not uri:
                    problem = T["wristband_no_camera"]
                else:
                    with self.services.open(uri) as device:
                        text = first_barcode(device.frames(), stop, shown=shown)
                        problem = "" if text or stop.is_set() else T["wristband_timeout"]
            except KioskError as error:
                problem = error.message
            Clock.schedule_once(lambda _dt: self._ended(text, problem))

        threading.Thread(target=reader, daemon=True, name="kiosk-wristband").start()
        self._event = Clock.schedule_interval(self._show_frame, 0)

    def _show_frame(self, _dt: float) -> None:
        if self._seq == self._shown or self._frame is None:
            return
        self._shown = self._seq
        self._size = tuple(self.ids.preview.size)
        self._texture = texture_from(self._frame, self._texture)
        self.ids.preview.texture = self._texture
        self.ids.preview.canvas.ask_update()
        if self.status == T["busy"]:
            self.status = T["wristband_title"]

    def _ended(self, text: str, problem: str) -> None:
        if self._event is not None:
            self._event.cancel()
            self._event = None
        if problem:
            self.status = problem
            return
        if self._stop.is_set():
            return
        self.dismiss()
        if text:
            self.on_read(text)

    def cancel(self) -> None:
        self._stop.set()
        if self._event is not None:
            self._event.cancel()
            self._event = None
        self.dismiss()
