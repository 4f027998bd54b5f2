"""UID generation and the equipment's name (the implementation's UIDs are in ``kiosk``)."""

from __future__ import annotations

from pydicom.uid import generate_uid

MANUFACTURER = "kiosk project"
MODEL_NAME = "kiosk"


def new_uid(root: str = "") -> str:
    """A new UID under ``root`` (from the configuration) or, without one, a 2.25 UUID-derived UID."""
    return generate_uid(prefix=f"{root}." if root else None)
