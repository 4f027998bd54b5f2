"""docs/media.md's profiles table says what kiosk/media/profiles.py does."""

from __future__ import annotations

from kiosk.media.profiles import NAMES, PROFILES
from tests.support.paths import ROOT


def _rows() -> list[list[str]]:
    section = (ROOT / "docs" / "media.md").read_text().split("### Media profiles")[1]
    lines = [line for line in section.split("\n\n")[1].splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_the_docs_table_lists_every_profile_with_its_rules():
    rows = _rows()
    assert [row[0].strip("`") for row in rows] == list(PROFILES)
    for name, medium, allowed, written, annex in rows:
        profile = PROFILES[name.strip("`")]
        assert medium == profile.medium, name
        assert allowed.split(", ") == [NAMES[uid] for uid in profile.allowed], name
        assert written == NAMES[profile.lossless], name
        assert annex.startswith(profile.annex.removeprefix("PS3.11 ")), name
        for identifier in profile.conforms_to:
            assert identifier in annex, name
