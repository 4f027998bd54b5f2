"""Text from other systems (a worklist, a PACS's error comment) made safe to show.

An ESC starts a terminal command, a CR overwrites the line, a newline breaks a
screen row, and bidirectional controls reorder what follows them: every such
character is shown as U+FFFD, on the terminal and on the touch screen alike.
"""

from __future__ import annotations

import re

# C0 and C1 controls, and the bidirectional controls that reorder what follows them on screen.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(value: object) -> str:
    """``value`` as text safe to show: control characters become U+FFFD."""
    return _UNSAFE.sub("\ufffd", str(value))
