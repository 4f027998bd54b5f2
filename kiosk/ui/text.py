"""Display helpers: DICOM names, dates and durations for people, and a font for every script.

Kivy has no font fallback. The bundled Roboto covers Latin, Greek and
Cyrillic; runs of CJK characters are wrapped in ``[font=...]`` markup with a
system CJK font when one is installed, so Japanese and Chinese names render
instead of boxes. Labels showing such text use ``markup: True``.
"""

from __future__ import annotations

import re
from pathlib import Path

from kivy.utils import escape_markup

from kiosk.display import printable

CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]+")


def cjk_font() -> str | None:
    return next((path for path in CJK_FONTS if Path(path).exists()), None)


def markup(text: str) -> str:
    """Escape ``text`` for a markup label (control characters shown as U+FFFD), giving CJK runs a
    font that has them."""
    text = printable(text)
    font = cjk_font()
    out, last = [], 0
    for match in _CJK.finditer(text):
        out.append(escape_markup(text[last:match.start()]))
        run = escape_markup(match.group())
        out.append(f"[font={font}]{run}[/font]" if font else run)
        last = match.end()
    out.append(escape_markup(text[last:]))
    return "".join(out)


def person_name(pn: str) -> str:
    """A DICOM PN for people: ``FAMILY^Given`` -> ``FAMILY, Given``; other
    component groups (ideographic, phonetic) follow in parentheses."""
    groups = [g for g in pn.split("=") if g.strip("^ ")]
    if not groups:
        return ""

    def one(group: str) -> str:
        parts = [p.strip() for p in group.split("^")]
        family, given = parts[0], " ".join(p for p in parts[1:4] if p)
        return f"{family}, {given}" if family and given else family or given

    first, rest = one(groups[0]), [one(g) for g in groups[1:]]
    return f"{first} ({' / '.join(rest)})" if rest else first


def date(value: str) -> str:
    """``YYYYMMDD`` -> ``YYYY-MM-DD`` (unambiguous everywhere); anything else unchanged."""
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def size(count: float) -> str:
    """A number of bytes for people: "41.2 GB", "4.1 MB", "38 kB"."""
    if count >= 1e9:
        return f"{count / 1e9:.1f} GB"
    if count >= 1e6:
        return f"{count / 1e6:.1f} MB"
    return f"{count / 1e3:.0f} kB"


def clock(seconds: float, tenths: bool = False) -> str:
    """A duration as on a player: ``m:ss`` (``m:ss.t`` with ``tenths``); minutes go past 59."""
    if tenths:
        whole = round(max(0.0, seconds) * 10)
        return f"{whole // 600}:{whole // 10 % 60:02d}.{whole % 10}"
    whole = int(max(0.0, seconds))
    return f"{whole // 60}:{whole % 60:02d}"
