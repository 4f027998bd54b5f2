"""Routing: which destinations a session's objects go to, by modality, source kind and SOP class.

Each ``[routing.NAME]`` rule names destinations (``send_to``) and what it
matches: ``modality``, ``source`` (scanner, camera, files, import) and
``sop_class`` lists, each optional (a rule with none matches everything).
A session goes to every destination of every rule one of its objects
matches; when no rule matches, to ``[routing] default``, or to every
destination when that is empty (also the behaviour without rules). The
touch UI preselects the chosen destinations and shows the reasons; ``kiosk
send`` without ``--to`` sends there; ``kiosk send --explain`` prints them
(``kiosk.explain``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from kiosk.capture import Capture, EncodedFormat, SourceKind

#: The source kinds a rule can name, and the Conversion Types (0008,0064) each covers.
SOURCES: dict[str, tuple[str, ...]] = {
    "scanner": ("SD", "DF", "SI"),
    "camera": ("DV", "DI"),
    "files": ("WSD", "SYN", "DRW"),
    "import": (),  # objects the kiosk did not make (no Conversion Type): a patient's CD, DICOM files
}
CRITERIA = ("modality", "source", "sop_class")
_KIND_SOURCE = {SourceKind.SCANNED_DOCUMENT: "scanner", SourceKind.DIGITIZED_FILM: "scanner",
                SourceKind.SCANNED_IMAGE: "scanner", SourceKind.VIDEO_FRAME: "camera", SourceKind.FILE_IMPORT: "files"}
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@dataclass(frozen=True)
class Routed:
    """One object as routing sees it."""

    modality: str
    source: str
    sop_class_uid: str


@functools.cache
def _sop_classes() -> dict[str, str]:
    """SOP class keyword -> UID, from pydicom's UID dictionary."""
    from pydicom.uid import UID_dictionary

    return {info[4]: uid for uid, info in UID_dictionary.items() if info[1] == "SOP Class" and info[4]}


def sop_class_uid(text: str) -> str | None:
    """The UID a rule's ``sop_class`` entry names (a keyword such as EncapsulatedPDFStorage, or a UID)."""
    if text and all(part.isdigit() for part in text.split(".")):
        return text
    return _sop_classes().get(text)


def sop_class_name(uid: str) -> str:
    """A SOP class's name for people (its UID when pydicom does not know it)."""
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name != uid else uid


def check_rule(rule: Mapping[str, Any]) -> str | None:
    """Why a ``[routing.NAME]`` table cannot be used (naming the key), or None."""
    import difflib

    for key in rule:
        if key not in (*CRITERIA, "send_to"):
            close = difflib.get_close_matches(key, [*CRITERIA, "send_to"], n=1)
            return f"{key}: unknown key; " + (f"did you mean {close[0]!r}?" if close else
                                              f"a rule takes send_to and any of {', '.join(CRITERIA)}")
    for key in (*CRITERIA, "send_to"):
        value = rule.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            return f'{key}: must be a list of names, e.g. {key} = ["{_EXAMPLE[key]}"]'
    if not rule.get("send_to"):
        return 'send_to: missing; name the destinations the rule sends to, e.g. send_to = ["pacs"]'
    for source in rule.get("source", []):
        if source not in SOURCES:
            return f"source: {source!r} is not a source kind; use {', '.join(SOURCES)}"
    for text in rule.get("sop_class", []):
        if sop_class_uid(text) is None:
            close = difflib.get_close_matches(text, list(_sop_classes()), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "use a SOP class keyword (e.g. EncapsulatedPDFStorage) or UID"
            return f"sop_class: {text!r} is not a SOP class; {hint}"
    return None


_EXAMPLE = {"modality": "ES", "source": "scanner", "sop_class": "EncapsulatedPDFStorage", "send_to": "pacs"}


def matches(rule: Mapping[str, Any], routed: Routed) -> bool:
    """Whether ``routed`` meets every criterion the rule gives."""
    return ((not rule.get("modality") or routed.modality.upper() in {m.upper() for m in rule["modality"]})
            and (not rule.get("source") or routed.source in rule["source"])
            and (not rule.get("sop_class") or routed.sop_class_uid in {sop_class_uid(s) for s in rule["sop_class"]}))


def describe_rule(name: str, rule: Mapping[str, Any]) -> str:
    """"rule 'endoscopy' (modality ES; source camera)" for the UI and ``--explain``."""
    criteria = [f"{key.replace('_', ' ')} {', '.join(rule[key])}" for key in CRITERIA if rule.get(key)]
    return f"rule {name!r}" + (f" ({'; '.join(criteria)})" if criteria else "")


def route(config: Any, objects: Iterable[Routed]) -> dict[str, list[str]]:
    """The destinations for a session's ``objects`` (in configuration order), each with why it was chosen."""
    objects = list(objects)
    rules = config.routing.rules
    reasons: dict[str, list[str]] = {}
    for name, rule in rules.items():
        if any(matches(rule, routed) for routed in objects):
            for destination in rule["send_to"]:
                reasons.setdefault(destination, []).append(describe_rule(name, rule))
    if not reasons:
        fallback = config.routing.default or list(config.destinations)
        why = "no rule matches: [routing] default" if config.routing.default else \
            ("no rule matches" if rules else "")
        reasons = {name: [why] if why else [] for name in fallback}
    return {name: reasons[name] for name in config.destinations if name in reasons}


def of_dataset(ds: Any) -> Routed:
    """How routing sees a built object (a file to send)."""
    conversion = str(ds.get("ConversionType", "") or "")
    source = next((kind for kind, codes in SOURCES.items() if conversion in codes), "import")
    return Routed(str(ds.get("Modality", "") or ""), source, str(ds.get("SOPClassUID", "")))


def of_capture(capture: Capture, modality: str, multiframe: bool = False) -> Routed:
    """How routing sees the object a capture will become, before it is built (the Send screen):
    a PDF becomes an Encapsulated PDF (modality DOC), an image a Secondary Capture (the
    multi-frame family when ``multiframe``; rules naming a multi-frame class see it so)."""
    source = _KIND_SOURCE[capture.kind]
    if capture.encoded_format is EncodedFormat.PDF:
        return Routed(modality or "DOC", source, ENCAPSULATED_PDF)
    if multiframe:
        pixels = capture.pixels
        family = ("TrueColor" if pixels is None or pixels.ndim == 3 else
                  "GrayscaleWord" if pixels.dtype.itemsize == 2 else "GrayscaleByte")
        return Routed(modality or "OT", source, _sop_classes()[f"MultiFrame{family}SecondaryCaptureImageStorage"])
    return Routed(modality or "OT", source, SECONDARY_CAPTURE)

