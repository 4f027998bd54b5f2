"""A ScrollView that fires ``on_pull`` when the list is pulled down from its top (pull to refresh)."""

from __future__ import annotations

from typing import Any

from kivy.metrics import dp

from kiosk.ui.widgets.clip import ClipScrollView

PULL_DISTANCE = 80  # dp the finger must travel down, starting with the list at its top


class PullScrollView(ClipScrollView):
    """Dragging down by ``PULL_DISTANCE`` dp while the content is at its top dispatches ``on_pull``."""

    __events__ = ("on_pull",)

    def on_touch_down(self, touch: Any) -> bool:
        at_top = not self.children or self.scroll_y >= 0.999 or self.children[0].height <= self.height
        if at_top and self.collide_point(*touch.pos):
            touch.ud[self._key] = touch.y
        return super().on_touch_down(touch)

    def on_touch_up(self, touch: Any) -> bool:
        start = touch.ud.pop(self._key, None)
        handled = super().on_touch_up(touch)
        if start is not None and start - touch.y >= dp(PULL_DISTANCE):  # Kivy's y grows upwards
            self.dispatch("on_pull")
        return handled

    @property
    def _key(self) -> str:
        return f"pull-{id(self)}"

    def on_pull(self) -> None:
        pass
