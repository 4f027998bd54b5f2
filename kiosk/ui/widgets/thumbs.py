"""Images from numpy arrays: textures, capture thumbnails (a clip's with its length), the live preview."""

from __future__ import annotations

from typing import Any

import numpy as np
from kivy.graphics.texture import Texture
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.image import Image

from kiosk.capture import Capture
from kiosk.ui.strings import T
from kiosk.ui.text import clock


def fit(pixels: Any, size: tuple[int, int]) -> Any:
    """Scale a frame down on the worker thread (live preview, clip playback) by the largest whole
    factor that keeps it at least the view's ``size``: smaller uploads, less to draw; the GPU
    scales the rest.

    Whole factors because OpenCV's area filter takes ~0.5 ms for them and ~8 ms for any other
    scale of a 1080p frame: CPU the window's redraw needs on a machine without a GPU.
    """
    height, width = pixels.shape[:2]
    if size[0] <= 0 or size[1] <= 0:
        return pixels
    factor = int(min(width / size[0], height / size[1]))
    if factor < 2:
        return pixels
    try:
        import cv2
    except ImportError:  # without OpenCV the GPU scales the full frame
        return pixels
    # A crop to a multiple of the factor (at most factor - 1 edge pixels) keeps OpenCV's fast path.
    rows, columns = height // factor, width // factor
    whole = pixels[: rows * factor, : columns * factor]
    return cv2.resize(whole, (columns, rows), interpolation=cv2.INTER_AREA)


def texture_from(pixels: np.ndarray, texture: Texture | None = None) -> Texture:
    """An RGB texture holding ``pixels`` (H x W x 3 uint8); reuses ``texture`` if the size fits."""
    height, width = pixels.shape[:2]
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    if texture is None or texture.size != (width, height):
        texture = Texture.create(size=(width, height), colorfmt="rgb")
        texture.flip_vertical()  # numpy rows go top-down, GL rows bottom-up
    data = np.ascontiguousarray(pixels, dtype=np.uint8)
    if not data.flags.writeable:  # Kivy's blit wants a writable buffer (PIL arrays are read-only)
        data = data.copy()
    texture.blit_buffer(data.reshape(-1).data, colorfmt="rgb", bufferfmt="ubyte")
    return texture


class Thumb(ButtonBehavior, Image):
    """A tappable capture thumbnail; ``selected`` draws a frame around it; ``badge`` a red label on it;
    ``clip`` marks a video clip with its length (``clip_badge``)."""

    index = NumericProperty(0)
    selected = BooleanProperty(False)
    badge = StringProperty("")
    clip = StringProperty("")


def clip_badge(capture: Capture) -> str:
    """"▶ 0:12" for a clip, "" for anything else."""
    return T["clip_badge"].format(duration=clock(capture.video.duration)) if capture.is_clip else ""
