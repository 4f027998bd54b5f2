"""What the order's modality and the source kind choose: the source offered first, the series description.

An endoscopy (ES), ultrasound (US) or photo (XC) order is captured from a camera or capture
card; a document (DOC) or other (OT) order from the scanner. Both rules read their tables
from the configuration (``[acquisition] live_modalities`` and ``series_descriptions``); the
defaults are here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the configuration imports this module: nothing heavy (kiosk.capture needs numpy)
    from kiosk.capture import SourceKind

# Orders whose images come from a live source: endoscopy, ultrasound, external-camera and
# general microscopy photography, slide microscopy, ophthalmic photography.
LIVE_MODALITIES = "ES;US;XC;GM;SM;OP"

# The series description of images by where they came from (``SourceKind`` names, lower case).
SERIES_DESCRIPTIONS = {
    "scanned_document": "Scanned documents",
    "digitized_film": "Digitized films",
    "scanned_image": "Scanned images",
    "video_frame": "Video capture",
    "file_import": "Imported files",
}


def series_description(kind: "SourceKind", descriptions: Mapping[str, str] | None = None) -> str:
    """The series description for images of ``kind``: the configured one, else the default."""
    key = kind.name.lower()
    return (descriptions or {}).get(key) or SERIES_DESCRIPTIONS[key]


def live_first(modality: str, live_modalities: str = LIVE_MODALITIES) -> bool:
    """True when an order of ``modality`` is captured from a camera or capture card."""
    return modality.upper() in {m.strip().upper() for m in live_modalities.split(";") if m.strip()}


def source_order(devices: Sequence[Any], modality: str, live_modalities: str = LIVE_MODALITIES) -> list[Any]:
    """``devices`` (each with a ``kind``: scanner, camera, file) with the kind the order's modality
    asks for first, the others in their order; unchanged when no modality is known."""
    if not modality:
        return list(devices)
    first = "camera" if live_first(modality, live_modalities) else "scanner"
    return sorted(devices, key=lambda device: device.kind != first)


def check_series_descriptions(value: Mapping[str, Any]) -> str | None:
    """The ``[acquisition.series_descriptions]`` table: known source kinds, texts of at most 64 characters."""
    for key, text in value.items():
        if key not in SERIES_DESCRIPTIONS:
            return f"has {key!r}; the source kinds are {', '.join(SERIES_DESCRIPTIONS)}"
        if not isinstance(text, str) or len(text) > 64 or "\\" in text:
            return f"{key} is {text!r}; give a text of at most 64 characters without a backslash"
    return None
