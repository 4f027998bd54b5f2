"""Images from numpy arrays: textures, capture thumbnails, the live preview."""

from __future__ import annotations

import numpy as np
from kivy.graphics.texture import Texture
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.image import Image


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
    """A tappable capture thumbnail; ``selected`` draws a frame around it; ``badge`` a red label on it."""

    index = NumericProperty(0)
    selected = BooleanProperty(False)
    badge = StringProperty("")
