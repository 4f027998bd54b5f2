"""Clipping with the scissor test instead of the stencil buffer: ClipScrollView, ClipScreenManager.

Kivy's ScrollView (a StencilView) and ScreenManager draw their rectangle twice
into the stencil buffer every frame. With software GL (Mesa llvmpipe, no GPU)
that cost ~20 ms per frame for the Acquire screen's source list alone, halving
the live preview's frame rate; the screen manager's full-window stencil cost as
much again. A scissor rectangle clips the same axis-aligned area for free.
Window coordinates are recomputed when the widget moves or resizes.
"""

from __future__ import annotations

from typing import Any

from kivy.graphics import BindTexture, StencilPop, StencilPush, StencilUnUse, StencilUse
from kivy.graphics.scissor_instructions import ScissorPop, ScissorPush
from kivy.uix.screenmanager import ScreenManager
from kivy.uix.scrollview import ScrollView

_STENCIL = (StencilPush, StencilUse, StencilUnUse, StencilPop)


class ScissorClip:
    """Mixin for a widget whose .kv rule clips with the stencil; for widgets that are not rotated
    or scaled (scissor clipping is axis-aligned)."""

    _scissor: ScissorPush | None = None

    def apply_class_lang_rules(self, *args: Any, **kwargs: Any) -> None:
        # The StencilView rule adds the stencil instructions here (for widgets built from .kv
        # files this runs after __init__), so they are swapped for the scissor right after.
        super().apply_class_lang_rules(*args, **kwargs)
        if self._scissor is None:
            self._scissor = ScissorPush(x=0, y=0, width=1, height=1)
            _replace_stencil(self.canvas.before, self._scissor)
            _replace_stencil(self.canvas.after, ScissorPop())
            self.bind(pos=self._clip, size=self._clip, parent=self._clip)
            self._clip()

    def _clip(self, *_args: Any) -> None:
        x, y = self.to_window(self.x, self.y)
        scissor = self._scissor
        scissor.x, scissor.y = int(x), int(y)
        scissor.width, scissor.height = max(1, int(self.width)), max(1, int(self.height))


def _replace_stencil(group: Any, replacement: Any) -> None:
    """Drop the stencil instructions and the rectangle each draws; put ``replacement`` in their place."""
    children = list(group.children)
    first = next((i for i, c in enumerate(children) if isinstance(c, _STENCIL)), None)
    if first is None:
        return
    last = max(i for i, c in enumerate(children) if isinstance(c, _STENCIL))
    for instruction in children[first:last + 1]:
        if not isinstance(instruction, BindTexture):  # removing a Rectangle removes its BindTexture
            group.remove(instruction)
    group.insert(first, replacement)


class ClipScrollView(ScissorClip, ScrollView):
    """A ScrollView clipped by the scissor."""


class ClipScreenManager(ScissorClip, ScreenManager):
    """A ScreenManager clipped by the scissor (the kiosk's screens do not slide or rotate)."""
