"""The clip position slider of the Review screen, with the trim marks drawn on it (seek.kv)."""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty, NumericProperty
from kivy.uix.slider import Slider


class SeekSlider(Slider):
    """A position the player moves and the user drags: ``on_seek(value)`` when the finger lets go.
    ``dragging`` while it is held (the player does not move it then); ``mark_start`` and
    ``mark_end`` (s, on the slider's scale) shade what a trim would cut."""

    dragging = BooleanProperty(False)
    mark_start = NumericProperty(0.0)
    mark_end = NumericProperty(0.0)
    __events__ = ("on_seek",)

    def on_touch_down(self, touch: Any) -> bool:
        handled = super().on_touch_down(touch)
        if handled and touch.grab_current is self:
            self.dragging = True
        return handled

    def on_touch_up(self, touch: Any) -> bool:
        if touch.grab_current is not self or not self.dragging:
            return super().on_touch_up(touch)
        super().on_touch_up(touch)
        self.dragging = False
        self.dispatch("on_seek", self.value)
        return True

    def on_seek(self, value: float) -> None:
        """The user moved the position to ``value``."""
