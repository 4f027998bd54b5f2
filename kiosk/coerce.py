"""Attribute coercion for one destination: the rules of ``[destinations.NAME.coerce]``.

A legacy PACS may want an institution name of its own, no referring
physician, names as ``FAMILY^GIVEN``, Latin-1 text, or an older SOP class.
``check_rules`` validates the rules when the configuration is loaded (the
keywords and SOP classes against pydicom's dictionaries, the values against
their VR); ``apply`` changes a copy of an object just before it is sent
(``kiosk.outbox.shaping``), or refuses it (``Refused``, naming the
attribute); ``describe`` says in words what a destination's copies get.

What identifies the patient, the study, the series and the instance, and the
pixels, is never changed: a destination must never put an image under
another patient (``PROTECTED``). Text that does not fit the destination's
character set is refused, never written as ``?``.
"""

from __future__ import annotations

import difflib
import functools
import string
from typing import Any, Iterator, Protocol

from pydicom import charset as pdcharset
from pydicom.config import RAISE
from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_dict
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import UID
from pydicom.valuerep import format_number_as_ds, validate_value

from kiosk.errors import KioskError

TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC"}  # PS3.5 6.1.2.3: the character set applies to these
NAME_PARTS = ("family", "given", "middle", "prefix", "suffix")  # PS3.5 6.2, the order of PN components

_PATIENT = "a destination must never put images under another patient"
_PIXELS = "the pixels and their description are the image itself"
_LOSSY = "the lossy compression history must stay true (a lossy transfer_syntax records its own step)"
#: Attributes ``set`` and ``remove`` may not touch, with the reason given.
PROTECTED: dict[str, str] = {
    "PatientID": _PATIENT, "PatientName": f"{_PATIENT} (name_format may change how names are written)",
    "IssuerOfPatientID": _PATIENT, "OtherPatientIDsSequence": _PATIENT,
    "StudyInstanceUID": "it would move the image to another study",
    "SeriesInstanceUID": "it would move the image to another series",
    "SOPInstanceUID": "the instance keeps its identity (a lossy transfer_syntax makes a derived instance itself)",
    "SOPClassUID": "use sop_class_fallback to send a SOP class as another",
    "SpecificCharacterSet": "use character_set to re-encode the text",
    **{k: _PIXELS for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData", "Rows", "Columns",
                            "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit",
                            "PixelRepresentation", "PlanarConfiguration", "NumberOfFrames", "EncapsulatedDocument")},
    **{k: _LOSSY for k in ("LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod")},
}


class Rules(Protocol):
    """What ``apply`` and ``describe`` read: ``kiosk.config.CoerceConfig`` (not imported: the
    configuration imports this module to check its rules)."""

    set: dict[str, Any]
    remove: list[str]
    require: list[str]
    character_set: str
    name_format: str
    sop_class_fallback: dict[str, str]


class Refused(KioskError):
    """The object cannot be sent to this destination as its rules want it; the message names the attribute."""


# -- the rules' vocabulary ---------------------------------------------------


@functools.cache
def _sop_classes() -> dict[str, str]:
    """SOP class keyword -> UID, from pydicom's UID dictionary."""
    # pydicom's own table: it has no public keyword -> UID map.
    from pydicom._uid_dict import UID_dictionary

    return {entry[4]: uid for uid, entry in UID_dictionary.items() if entry[1] == "SOP Class" and entry[4]}


@functools.cache
def _codecs() -> dict[str, str]:
    """Specific Character Set terms a destination may ask for -> the Python codec that encodes them exactly.

    Single-valued sets without code extensions (ISO 2022 escapes): pydicom encodes those with one codec.
    ISO_IR 13 is left out (Python's shift_jis also takes kanji, which it cannot hold); ISO_IR 6, which
    pydicom maps to Latin-1, means the default repertoire: ASCII, written without a Specific Character Set.
    """
    codecs = {term: codec for term, codec in pdcharset.python_encoding.items()
              if term and "2022" not in term and term not in ("ISO_IR 6", "ISO_IR 13")}
    return {**codecs, "ISO_IR 6": "ascii"}


def _sop_class_uid(text: str) -> str | None:
    """The UID a SOP class keyword (or a dotted UID) names, or None."""
    if text in _sop_classes():
        return _sop_classes()[text]
    return text if "." in text and UID(text).is_valid else None


def _sop_class_name(uid: str) -> str:
    name = UID(uid).name
    return name if name != uid else f"SOP class {uid}"


def _keyword_problem(keyword: Any) -> str | None:
    if not isinstance(keyword, str):
        return f"{keyword!r} is not an attribute keyword; write keywords in quotes, e.g. \"InstitutionName\""
    if keyword in keyword_dict:
        return None
    close = difflib.get_close_matches(keyword, keyword_dict, n=1)
    hint = f"did you mean {close[0]}?" if close else "write the keyword as in PS3.6, e.g. InstitutionName"
    return f"not a DICOM attribute keyword; {hint}"


def _protected_problem(keyword: str) -> str | None:
    if Tag(keyword_dict[keyword]).group == 0x0002:
        return "may not be changed: the file meta information is the kiosk's to write"
    reason = PROTECTED.get(keyword)
    return f"may not be changed: {reason}" if reason else None


_VR_HINTS = {"DA": "write dates as YYYYMMDD", "TM": "write times as HHMMSS", "DT": "write YYYYMMDDHHMMSS",
             "CS": "capitals, digits, space and _ only, at most 16", "UI": "digits and dots, at most 64",
             "AS": "e.g. 045Y", "DS": "a decimal number", "IS": "a whole number"}


def _element_value(keyword: str, value: Any) -> Any:
    """A TOML value as pydicom wants it for the attribute's VR (numbers for DS and IS become text);
    ValueError with the reason when it does not fit."""
    vr = dictionary_VR(keyword).split(" or ")[0]
    if vr == "SQ":
        raise ValueError("a sequence cannot be set; set its attributes' values at the top level, or remove it")
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and dictionary_VM(keyword) == "1":
        raise ValueError("takes one value, not a list")
    fixed = []
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise ValueError(f"{item!r} is not a value for VR {vr}; write text in quotes (dates as \"YYYYMMDD\")")
        if vr == "DS" and isinstance(item, (int, float)):
            item = format_number_as_ds(float(item))
        elif vr == "IS" and isinstance(item, int):
            item = str(item)
        if isinstance(item, str) and "\\" in item:
            raise ValueError("has a backslash; give several values as a list, e.g. [\"A\", \"B\"]")
        try:
            validate_value(vr, item, RAISE)
        except ValueError as exc:
            reason = str(exc).split(" Please see")[0].rstrip(".")
            why = _VR_HINTS.get(vr, "") if reason.startswith("Invalid value") else reason
            raise ValueError(f"{item!r} is not a valid {vr} value{f' ({why})' if why else ''}") from None
        fixed.append(item)
    return fixed if isinstance(value, list) else fixed[0]


def _fits(text: str, codec: str) -> bool:
    """Whether ``text`` encodes in ``codec`` and decodes back to itself (no replacement characters)."""
    try:
        return text.encode(codec).decode(codec) == text
    except (UnicodeError, LookupError):
        return False


# -- checking ------------------------------------------------------------------


def check_rules(values: dict[str, Any]) -> str | None:
    """The first problem of a ``[destinations.NAME.coerce]`` table (``Rules`` values, types already
    checked), as ``"KEY...: what is wrong; what to do"``, or None."""
    codec = None
    charset = values.get("character_set", "")
    if charset:
        if "\\" in charset:
            return "character_set: give one character set, not several (code extensions are not supported)"
        codec = _codecs().get(charset)
        if codec is None:
            close = difflib.get_close_matches(charset, _codecs(), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "e.g. \"ISO_IR 100\" (Latin-1) or \"ISO_IR 192\" (UTF-8)"
            return f"character_set: {charset!r} is not a single character set pydicom can write; {hint}"
    settings = values.get("set", {})
    for keyword, value in settings.items():
        problem = _keyword_problem(keyword) or _protected_problem(keyword)
        if problem is None:
            try:
                fixed = _element_value(keyword, value)
            except ValueError as exc:
                problem = str(exc)
            else:
                texts = fixed if isinstance(fixed, list) else [fixed]
                if codec and dictionary_VR(keyword) in TEXT_VRS and not all(_fits(t, codec) for t in texts):
                    problem = f"does not fit character_set {charset}; change the value or the character set"
        if problem:
            return f"set.{keyword}: {problem}"
    for key in ("remove", "require"):
        for keyword in values.get(key, []):
            problem = _keyword_problem(keyword) or (_protected_problem(keyword) if key == "remove" else None)
            if problem is None and key == "remove" and keyword in settings:
                problem = "is also in set; keep it in one of them"
            if problem is None and key == "require" and keyword in values.get("remove", []):
                problem = "is also in remove: no object could be sent; keep it in one of them"
            if problem:
                return f"{key}.{keyword}: {problem}"
    if problem := _name_format_problem(values.get("name_format", "")):
        return f"name_format: {problem}"
    for old, new in values.get("sop_class_fallback", {}).items():
        for text, what in ((old, "key"), (new, "value")):
            if problem := _sop_class_problem(text):
                return f"sop_class_fallback.{old}: the {what} {problem}"
        if _sop_class_uid(old) == _sop_class_uid(new):
            return f"sop_class_fallback.{old}: names the same SOP class twice; remove it"
    return None


def _name_format_problem(template: str) -> str | None:
    if not template:
        return None
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:
        return f"{template!r} cannot be read ({exc}); write e.g. \"{{family}}^{{given}}\""
    for name, spec, conversion in fields:
        if name not in NAME_PARTS or spec or conversion:
            return f"{{{name}}} is not a name part; use {', '.join('{' + p + '}' for p in NAME_PARTS)}"
    if "family" not in {name for name, _, _ in fields}:
        return "must contain {family}: the family name is what identifies the person"
    sample = template.format(**{part: part.upper() for part in NAME_PARTS})
    if "=" in sample or "\\" in sample:
        return "may not contain '=' or '\\' (they separate name groups and values in DICOM)"
    if sample.count("^") > 4:
        return "has more than four '^': a DICOM name has at most five components"
    return None


def _sop_class_problem(text: Any) -> str | None:
    if not isinstance(text, str):
        return f"{text!r} is not a SOP class; write a keyword or UID in quotes"
    uid = _sop_class_uid(text)
    if uid is None:
        close = difflib.get_close_matches(text, _sop_classes(), n=1)
        hint = f"did you mean {close[0]}?" if close else "use a keyword such as SecondaryCaptureImageStorage or a UID"
        return f"{text!r} is not a SOP class keyword or UID; {hint}"
    name = UID(uid).name
    if name != uid and (" Storage" not in name or "Commitment" in name):
        return f"{text!r} ({name}) is not a storage SOP class"
    return None


# -- applying --------------------------------------------------------------------


def active(rules: Rules | None) -> bool:
    """Whether ``rules`` change anything at all."""
    return rules is not None and any((rules.set, rules.remove, rules.require, rules.character_set, rules.name_format,
                                      rules.sop_class_fallback))


def sent_sop_class(uid: str, rules: Rules | None) -> str:
    """The SOP Class UID an object of SOP class ``uid`` is sent as under ``rules``."""
    for old, new in (rules.sop_class_fallback if rules else {}).items():
        if _sop_class_uid(old) == uid:
            return _sop_class_uid(new) or uid
    return uid


def apply(ds: Dataset, rules: Rules) -> None:
    """Change ``ds`` in place as ``rules`` (checked by ``check_rules``) say; raise ``Refused`` naming the
    attribute when a required one is missing or empty, or a text does not fit the character set.

    The SOP Instance UID never changes; the file meta is left to the writer (``kiosk.part10.set_file_meta``).
    """
    if rules.character_set:
        # Every value read under the character set it came in, before the label changes.
        ds.decode()
    ds.SOPClassUID = sent_sop_class(str(ds.SOPClassUID), rules)
    for keyword in rules.remove:
        if keyword in ds:
            del ds[keyword]
    for keyword, value in rules.set.items():
        tag = keyword_dict[keyword]
        ds[tag] = DataElement(tag, dictionary_VR(keyword).split(" or ")[0], _element_value(keyword, value))
    if rules.name_format:
        for holder, elem, _ in _text_elements(ds):
            if elem.VR == "PN":
                values = [_format_name(str(v), rules.name_format) for v in _values(elem)]
                holder[elem.tag].value = values if elem.VM > 1 else values[0]
    if rules.character_set:
        _reencode(ds, rules.character_set)
    for keyword in rules.require:
        if keyword not in ds or _empty(ds[keyword]):
            raise Refused(f"{keyword} {Tag(keyword_dict[keyword])} is required by this destination but is missing "
                          "or empty", "fill it in and send again, or take it out of the destination's coerce require")


def _values(elem: DataElement) -> list[Any]:
    if elem.value is None:
        return []
    return list(elem.value) if isinstance(elem.value, (list, MultiValue)) else [elem.value]


def _empty(elem: DataElement) -> bool:
    return not any(str(v).strip(" \0^=") if elem.VR != "SQ" else v for v in _values(elem))


def _text_elements(ds: Dataset, where: str = "") -> Iterator[tuple[Dataset, DataElement, str]]:
    """(holding dataset, element, where: "Keyword" or "Sequence > Keyword") of every text element, nested too."""
    for elem in ds:
        name = elem.keyword or str(elem.tag)
        if elem.VR == "SQ":
            for item in elem.value or ():
                yield from _text_elements(item, f"{where}{name} > ")
        elif elem.VR in TEXT_VRS:
            yield ds, elem, f"{where}{name} {elem.tag}"


def _format_name(value: str, template: str) -> str:
    """One Person Name written as ``template`` says, group by group (alphabetic, ideographic, phonetic)."""
    groups = []
    for group in value.split("="):
        parts = dict(zip(NAME_PARTS, (group.split("^") + [""] * 5)[:5]))
        groups.append(template.format(**parts).rstrip("^ "))
    return "=".join(groups).rstrip("=")


def _reencode(ds: Dataset, term: str) -> None:
    """Label ``ds`` (decoded) with ``term``, refusing the first text value that does not fit it."""
    codec = _codecs()[term]
    for _, elem, where in _text_elements(ds):
        if not all(_fits(str(v), codec) for v in _values(elem)):
            raise Refused(f"{where} does not fit the destination's character set {term}: it holds characters "
                          "that set cannot write", "correct the text, or give the destination a character_set that "
                          "holds it (ISO_IR 192 is UTF-8)")
    for item in list(_items_with_charset(ds)):
        del item.SpecificCharacterSet  # an item's own character set would override the one sent
    if term == "ISO_IR 6":
        ds.pop("SpecificCharacterSet", None)  # the default repertoire has no term of its own
    else:
        ds.SpecificCharacterSet = term


def _items_with_charset(ds: Dataset) -> Iterator[Dataset]:
    """The sequence items, at any depth, that have a Specific Character Set of their own."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or ():
                if "SpecificCharacterSet" in item:
                    yield item
                yield from _items_with_charset(item)


# -- describing --------------------------------------------------------------------


def describe(rules: Rules | None) -> list[str]:
    """One line per change ``rules`` make to the copies sent, for people (``kiosk send --explain``)."""
    if rules is None:
        return []
    lines = [f"{keyword} set to {value!r}" for keyword, value in rules.set.items()]
    lines += [f"{keyword} removed" for keyword in rules.remove]
    if rules.name_format:
        lines.append(f"person names written as {rules.name_format}")
    if rules.character_set == "ISO_IR 6":
        lines.append("text sent in the default repertoire (ASCII); an object with other characters is refused")
    elif rules.character_set:
        lines.append(f"text re-encoded as {rules.character_set}; an object with text it cannot hold is refused")
    lines += [f"{_sop_class_name(_sop_class_uid(old))} sent as {_sop_class_name(_sop_class_uid(new))}"
              for old, new in rules.sop_class_fallback.items()]
    lines += [f"not sent without {keyword}" for keyword in rules.require]
    return lines
