"""Specific Character Set (0008,0005): chosen from the content so names round-trip.

Order of preference: the character set the data came in (a worklist's own,
e.g. Japanese ``\\ISO 2022 IR 87`` with ideographic and phonetic name groups)
if it holds every value exactly; no Specific Character Set for plain ASCII;
``ISO_IR 100`` (Latin-1) when that suffices; ``ISO_IR 192`` (UTF-8) for
everything else. A value is accepted for a set only if encoding and decoding
it gives it back unchanged, so ``?`` replacement characters never reach a file.
"""

from __future__ import annotations

import warnings
from typing import Iterable

from pydicom import charset as pdcharset
from pydicom.dataset import Dataset
from pydicom.valuerep import PersonName

TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC"}
LATIN1, UTF8 = "ISO_IR 100", "ISO_IR 192"


def text_values(ds: Dataset) -> list[tuple[str, str]]:
    """(VR, value) of every character-set dependent string in ``ds``, sequences included."""
    out: list[tuple[str, str]] = []
    for elem in ds.iterall():
        if elem.VR not in TEXT_VRS or elem.value is None:
            continue
        values = elem.value if elem.VM > 1 else [elem.value]
        out += [(elem.VR, str(v)) for v in values if v is not None and str(v)]
    return out


def round_trips(values: Iterable[tuple[str, str]], specific_charset: str | Iterable[str]) -> bool:
    """True if every value survives encoding and decoding with ``specific_charset`` exactly."""
    terms = [specific_charset] if isinstance(specific_charset, str) else list(specific_charset)
    encodings = pdcharset.convert_encodings(terms)
    ascii_default = len(terms) > 1 and terms[0] in ("", "ISO 2022 IR 6")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom only warns before writing '?'
        for vr, value in values:
            try:
                if vr == "PN":
                    encoded = PersonName(value).encode(encodings)
                    decoded = str(PersonName(encoded, encodings))
                else:
                    encoded = pdcharset.encode_string(value, encodings)
                    decoded = pdcharset.decode_bytes(encoded, encodings, set())
            except (UnicodeError, ValueError, UserWarning, LookupError):
                return False
            if decoded != value or (ascii_default and not _g0_is_ascii(encoded)):
                return False
    return True


def _g0_is_ascii(encoded: bytes) -> bool:
    """With code extensions over the default repertoire, bytes outside an escape
    sequence's scope must be ASCII (pydicom's Python codec for '' is Latin-1
    and would let e.g. 'ü' through unescaped)."""
    in_default = True
    i = 0
    while i < len(encoded):
        byte = encoded[i]
        if byte == 0x1B:
            in_default = encoded[i + 1:i + 3] in (b"(B", b"(J")
            i += 3 if encoded[i + 1:i + 2] in (b"(", b")", b"-") else 4
            continue
        if byte >= 0x80 and in_default:
            return False
        i += 1
    return True


def choose_charset(values: list[tuple[str, str]], preferred: str | Iterable[str] = "") -> str | list[str] | None:
    """The Specific Character Set for ``values``; None means the default repertoire (ASCII)."""
    if preferred:
        pref = preferred if isinstance(preferred, str) else list(preferred)
        if round_trips(values, pref):
            return pref
    text = "".join(v for _, v in values)
    if text.isascii():
        return None
    try:
        text.encode("latin-1")
        return LATIN1
    except UnicodeEncodeError:
        return UTF8


def apply_charset(ds: Dataset, preferred: str | Iterable[str] = "") -> None:
    """Set (or leave out) Specific Character Set in ``ds`` to suit its strings."""
    chosen = choose_charset(text_values(ds), preferred)
    if chosen is None:
        if "SpecificCharacterSet" in ds:
            del ds.SpecificCharacterSet
    else:
        ds.SpecificCharacterSet = chosen
