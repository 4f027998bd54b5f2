"""KioskCheck: a CheckBox drawn high-contrast on the dark theme (its canvas is in theme.kv)."""

from __future__ import annotations

from kivy.uix.checkbox import CheckBox


class KioskCheck(CheckBox):
    """Kivy's CheckBox behaviour (``active``, ``group``) without its low-contrast images."""
