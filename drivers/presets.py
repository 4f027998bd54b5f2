"""Scan presets (built-in and ``[presets.NAME]`` tables) and scan areas (paper sizes, X,Y,W,H in mm)."""

from __future__ import annotations

import math
from typing import Any, Mapping

from drivers.device import Settings
from kiosk.errors import UsageError

PRESET_KEYS = {"mode": str, "depth": int, "dpi": (int, float), "source": str, "film": bool}
# Page clean-up after each scan (kiosk/cleanup.py; docs/drivers.md "Page clean-up"): on or off.
CLEANUP_KEYS = ("deskew", "auto_crop", "drop_blank", "auto_rotate", "clean_borders")
MODES = ("color", "gray")
SOURCES = ("flatbed", "adf", "transparency")

BUILTIN_PRESETS: dict[str, Settings] = {
    "Document": Settings(mode="gray", depth=8, dpi=300, source="flatbed"),
    "Film": Settings(mode="gray", depth=16, dpi=300, source="transparency", film=True),
    "Photo": Settings(mode="color", depth=8, dpi=600, source="flatbed", photo=True),
}

# What a front desk expects of a document scan: straight pages without the feeder's dark edges, and
# a duplex batch's empty backs left out (said on screen). Auto-crop needs a dark lid and auto-rotate
# can be fooled by pages with little text, so both are asked for per preset. Films and photos are
# never touched. Presets of one's own start from Document's values, these included.
BUILTIN_CLEANUP: dict[str, dict[str, bool]] = {
    "Document": {"deskew": True, "drop_blank": True, "clean_borders": True},
}


# Paper sizes for ``--area`` (width, height in mm; ISO 216 and US sizes).
PAPER_SIZES_MM: dict[str, tuple[float, float]] = {
    "A4": (210.0, 297.0), "A5": (148.0, 210.0), "A6": (105.0, 148.0), "B5": (176.0, 250.0),
    "LETTER": (215.9, 279.4), "LEGAL": (215.9, 355.6),
}


def parse_area(text: str) -> tuple[float, float, float, float]:
    """A scan area (left, top, right, bottom in mm) from a paper size (``A4``, ``LETTER``) or ``X,Y,W,H`` in mm."""
    size = PAPER_SIZES_MM.get(text.strip().upper())
    if size:
        return (0.0, 0.0, *size)
    try:
        x, y, w, h = map(float, text.split(","))
    except ValueError:  # not four numbers
        raise UsageError(f"scan area {text!r} is neither a paper size nor X,Y,W,H",
                         f"use one of {', '.join(PAPER_SIZES_MM)}, or X,Y,W,H in mm, e.g. 0,0,100,150") from None
    if not (x >= 0 and y >= 0 and w > 0 and h > 0 and math.isfinite(x + y + w + h)):
        raise UsageError(f"scan area {text!r}: X and Y must be 0 or more, W and H more than 0 (mm)")
    return (x, y, x + w, y + h)


def format_area(area: tuple[float, float, float, float]) -> str:
    """``W x H mm at X,Y`` for people."""
    left, top, right, bottom = area
    return f"{right - left:g} x {bottom - top:g} mm at {left:g},{top:g}"


def area_matches(wanted: tuple[float, ...], got: tuple[float, ...], tolerance: float = 1.0) -> bool:
    """True if a read-back area is the requested one up to the device's step (SANE test: 1 mm)."""
    return all(abs(a - b) <= tolerance for a, b in zip(wanted, got))


def check_preset(values: Mapping[str, Any]) -> str | None:
    """Validate one ``[presets.NAME]`` table; a message or None (used by kiosk.config)."""
    for key, value in values.items():
        if key in CLEANUP_KEYS:
            if not isinstance(value, bool):
                return f"{key} = {value!r}; use true or false"
            continue
        if key not in PRESET_KEYS:
            return f"unknown setting {key!r}; use {', '.join((*PRESET_KEYS, *CLEANUP_KEYS))}"
        types = PRESET_KEYS[key]
        if isinstance(value, bool) != (types is bool) or not isinstance(value, types):
            return f"{key} = {value!r} has the wrong type"
    if values.get("mode", "gray") not in MODES:
        return f"mode = {values['mode']!r}; use \"color\" or \"gray\""
    if values.get("depth", 8) not in (8, 16):
        return f"depth = {values['depth']}; use 8 or 16"
    if values.get("source", "flatbed") not in SOURCES:
        return f"source = {values['source']!r}; use one of {', '.join(SOURCES)}"
    if values.get("dpi", 300) <= 0:
        return f"dpi = {values['dpi']}; use a positive resolution"
    return None


PRESET_NAME_MAX = 32
RESERVED_SUFFIX = " (feeder)"  # the touch UI offers "NAME (feeder)" for flatbed presets


def check_preset_name(name: str) -> str | None:
    """Validate the NAME of a ``[presets.NAME]`` of one's own; a message or None (used by kiosk.config)."""
    if not name.strip() or name != name.strip():
        return "a preset name must not be empty or start or end with spaces"
    if len(name) > PRESET_NAME_MAX:
        return f"a preset name has at most {PRESET_NAME_MAX} characters"
    if any(not c.isprintable() for c in name):
        return "a preset name must not contain control characters"
    if name.lower().endswith(RESERVED_SUFFIX):
        return f"a preset name must not end with {RESERVED_SUFFIX.strip()!r} (the touch screen adds it)"
    for builtin in BUILTIN_PRESETS:
        if name.lower() == builtin.lower():
            return f"write the built-in preset's name as {builtin!r}"
    return None


def presets(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Settings]:
    """Built-in presets with the ``[presets.NAME]`` tables applied: overrides of the built-in ones,
    and presets of one's own, which start from Document's settings."""
    result = dict(BUILTIN_PRESETS)
    for name, values in (overrides or {}).items():
        scan = {key: value for key, value in values.items() if key not in CLEANUP_KEYS}
        if values:
            result[name] = result.get(name, BUILTIN_PRESETS["Document"]).merged(**scan)
    return result


def preset_cleanup(name: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, bool]:
    """The clean-up steps (``CLEANUP_KEYS`` -> on) of a preset by name, case-insensitive: the built-in
    values with the ``[presets.NAME]`` table's on top; presets of one's own start from Document's.
    An unknown name has none."""
    tables = {key.lower(): value for key, value in (overrides or {}).items()}
    builtin = {key.lower(): value for key, value in BUILTIN_CLEANUP.items()}
    known = {key.lower() for key in presets(overrides)}
    wanted = name.lower()
    if wanted not in known:
        return {key: False for key in CLEANUP_KEYS}
    start = builtin.get(wanted, {}) if wanted in {k.lower() for k in BUILTIN_PRESETS} else builtin.get("document", {})
    table = tables.get(wanted) or {}
    return {key: bool(table.get(key, start.get(key, False))) for key in CLEANUP_KEYS}


def preset(name: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
    """One preset by name (case-insensitive); UsageError naming the choices otherwise."""
    table = presets(overrides)
    for key, value in table.items():
        if key.lower() == name.lower():
            return value
    raise UsageError(f"unknown preset {name!r}", f"use one of {', '.join(table)}")
