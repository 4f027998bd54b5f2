"""Specific Character Set (0008,0005): chosen from the content so names round-trip.

Order of preference: the character set the data came in (the study
context's ``charset``: a worklist item's own, e.g. Japanese
``\\ISO 2022 IR 87`` with ideographic and phonetic name groups, whether the
item was read from the C-FIND response or from a ``--worklist-item`` file,
which keeps (0008,0005)) if it holds every value exactly; no Specific
Character Set for plain ASCII; ``ISO_IR 100`` (Latin-1) when that suffices;
``ISO_IR 192`` (UTF-8) for everything else. A value is accepted for a set
only if encoding and decoding it gives it back unchanged, so ``?``
replacement characters never reach a file.

``misreadings`` finds values that came in declared Latin-1 (or the default
repertoire) whose bytes are valid multi-byte UTF-8: a sender that wrote UTF-8
under the wrong label ("Å IMKOVÃ^ANNA" for "ŠIMKOVÁ^ANNA"). Real Latin-1
text almost never forms valid UTF-8, but it can, so the kiosk does not guess:
it shows both readings and the operator chooses (``read_as_utf8`` gives the
other one).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Iterable, Iterator

from pydicom import charset as pdcharset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.valuerep import PersonName

TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC"}
LATIN1, UTF8 = "ISO_IR 100", "ISO_IR 192"
# Python codecs of the declared sets (default repertoire, Latin-1) that read UTF-8 bytes one per character.
LATIN_CODECS = set(pdcharset.convert_encodings(["ISO_IR 6", LATIN1, "ISO 2022 IR 100"])) | {pdcharset.default_encoding}


@dataclass(frozen=True)
class Misread:
    """A value declared Latin-1 (or ASCII) whose bytes are valid UTF-8: both readings."""

    keyword: str
    declared: str
    utf8: str


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


def misreadings(ds: Dataset) -> list[Misread]:
    """Every text value of ``ds`` (sequences included) whose declared character set is in doubt."""
    return [Misread(elem.keyword, elem_text, reading) for _, elem, elem_text, reading in _doubtful(ds)]


def read_as_utf8(ds: Dataset) -> Dataset:
    """A copy of ``ds`` with the values ``misreadings`` names read as UTF-8, labelled ISO_IR 192."""
    out = copy.deepcopy(ds)
    out.decode()  # every other value keeps its reading under the declared set before the label changes
    for holder, elem, _, reading in list(_doubtful(out)):
        holder[elem.tag].value = reading.encode("utf-8")  # decoded under the new label below
    out.SpecificCharacterSet = UTF8
    for elem in out.iterall():
        for item in elem.value if elem.VR == "SQ" else ():
            if "SpecificCharacterSet" in item:
                item.SpecificCharacterSet = UTF8
    out.decode()
    return out


def _doubtful(ds: Dataset) -> Iterator[tuple[Dataset, DataElement, str, str]]:
    """(dataset, element, value as declared, value as UTF-8) for each value in doubt."""
    codecs = ds._character_set  # its own Specific Character Set, else the enclosing dataset's
    latin = all(codec in LATIN_CODECS for codec in ([codecs] if isinstance(codecs, str) else codecs))
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        try:
            vr = raw.VR or dictionary_VR(tag)
        except KeyError:
            continue  # a private tag in implicit VR: nothing known about it
        if vr == "SQ":
            for item in ds[tag].value or ():
                yield from _doubtful(item)
            continue
        if not latin or vr not in TEXT_VRS:
            continue
        data = (_bytes(raw) or b"").rstrip(b" \x00")  # without the padding to an even length
        if data.isascii():
            continue
        try:
            reading = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        yield ds, ds[tag], data.decode("latin-1"), reading


def _bytes(elem: DataElement | RawDataElement) -> bytes | None:
    """The element's bytes as sent: raw if not yet decoded, else its Latin-1 encoding (exact for a
    value decoded as Latin-1; a value that does not encode was not decoded that way)."""
    if isinstance(elem, RawDataElement):
        return elem.value
    values = elem.value if elem.VM > 1 else [elem.value]
    try:
        return "\\".join("" if v is None else str(v) for v in values).encode("latin-1")
    except UnicodeEncodeError:
        return None
