"""Our implementation's identity and UID generation."""

from __future__ import annotations

from pydicom.uid import generate_uid

from kiosk import __version__

# Fixed for this implementation: a UUID-derived UID (PS3.5 B.2), no registered root needed.
IMPLEMENTATION_CLASS_UID = "2.25.38431149485391800685579489684331599437"
IMPLEMENTATION_VERSION_NAME = f"KIOSK_{__version__}"[:16]
MANUFACTURER = "kiosk project"
MODEL_NAME = "kiosk"


def new_uid(root: str = "") -> str:
    """A new UID under ``root`` (from the configuration) or, without one, a 2.25 UUID-derived UID."""
    return generate_uid(prefix=f"{root}." if root else None)
