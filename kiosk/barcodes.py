"""Barcodes on pages: read them (zxing-cpp) and judge them against the session's patient and order.

``read`` finds the Code 128, Code 39, QR, DataMatrix and PDF417 symbols on a
page; ``judge`` applies the ``[barcodes]`` rules to them: a barcode naming
another patient (``patient_id``) or order (``accession``) than the session's
``StudyContext`` is a ``Mismatch``; one matching ``separator`` makes the page a
separator sheet. ``check`` does both for a capture, and reads nothing when no
rule is set. ``read_frame`` is the one fast pass for camera frames (a wristband
held up to the camera).

A verdict travels with its capture as ``capture.metadata["barcode"]``
(``Verdict.to_json``), so a kept session still knows which pages were flagged.
The barcode's value is shown to the operator (it is their own patient's
paperwork); it is never logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from kiosk.capture import Capture
from kiosk.errors import KioskError

if TYPE_CHECKING:
    from kiosk.config import BarcodesConfig
    from kiosk.study import StudyContext

#: The symbologies read, by zxing-cpp's names: what hospital labels, wristbands and forms carry.
FORMATS = ("Code128", "Code39", "QRCode", "DataMatrix", "PDF417")
METADATA_KEY = "barcode"

# A 300 dpi page at half size reads label barcodes in ~25 ms; a page without any costs the
# second pass at full size (~140 ms), which the finest symbols (0.25 mm Code 39 modules) need.
# Measured in tests/benchmarks/test_barcodes_bench.py.
FIRST_PASS_SCALE = 2


@dataclass(frozen=True)
class Barcode:
    """One symbol found: its format (a ``FORMATS`` name) and its text."""

    format: str
    text: str


@dataclass(frozen=True)
class Mismatch:
    """A barcode naming another patient (``field`` "patient_id") or order ("accession") than the session's."""

    field: str
    value: str  # the barcode's patient ID or accession number

    def describe(self) -> str:
        """For the operator: what the page names (the value included)."""
        if self.field == "accession":
            return f"a barcode of another order (accession {self.value})"
        return f"a barcode of another patient (ID {self.value})"


@dataclass(frozen=True)
class Verdict:
    """What a page's barcodes mean for the session."""

    mismatch: Mismatch | None = None
    separator: bool = False

    def __bool__(self) -> bool:
        return self.mismatch is not None or self.separator

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"separator": self.separator}
        if self.mismatch is not None:
            out["field"], out["value"] = self.mismatch.field, self.mismatch.value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "Verdict":
        if not data:
            return cls()
        mismatch = Mismatch(data["field"], data["value"]) if data.get("field") else None
        return cls(mismatch, bool(data.get("separator")))

    @classmethod
    def of(cls, capture: Capture) -> "Verdict":
        """The verdict a capture carries (none: nothing flagged)."""
        return cls.from_json(capture.metadata.get(METADATA_KEY))


# -- reading ------------------------------------------------------------------------------------
def _gray(pixels: np.ndarray, bits: int = 8) -> np.ndarray:
    """8-bit grayscale, as zxing-cpp reads it fastest."""
    if pixels.dtype == np.bool_:
        return pixels.astype(np.uint8) * 255
    if pixels.dtype == np.uint16:
        pixels = (pixels >> max(bits - 8, 0)).clip(0, 255).astype(np.uint8)
    if pixels.ndim == 3:
        import cv2

        pixels = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(pixels)


def _decode(gray: np.ndarray) -> list[Barcode]:
    import zxingcpp

    formats = tuple(getattr(zxingcpp.BarcodeFormat, name) for name in FORMATS)
    found = zxingcpp.read_barcodes(gray, formats=formats, try_rotate=True, try_downscale=False, try_invert=False)
    names = {getattr(zxingcpp.BarcodeFormat, name): name for name in FORMATS}
    return [Barcode(names.get(b.format, str(b.format)), b.text) for b in found if b.valid and b.text]


def read_pixels(pixels: np.ndarray, bits: int = 8) -> list[Barcode]:
    """The barcodes on a page's pixels: a pass at half size, then at full size if it found none."""
    gray = _gray(pixels, bits)
    height, width = gray.shape
    if min(height, width) >= 1200:  # a page, not a label: the first pass is worth it
        import cv2

        small = cv2.resize(gray, (width // FIRST_PASS_SCALE, height // FIRST_PASS_SCALE), interpolation=cv2.INTER_AREA)
        found = _decode(small)
        if found:
            return found
    return _decode(gray)


def read(capture: Capture) -> list[Barcode]:
    """The barcodes on a capture's page (a PDF capture: none, its pages are not rendered)."""
    from kiosk.processing import pixels_of

    if capture.pixels is None and capture.encoded_format is not None and capture.encoded_format.value == "pdf":
        return []
    return read_pixels(pixels_of(capture), capture.effective_bits)


def read_frame(pixels: np.ndarray) -> list[Barcode]:
    """The barcodes on one camera frame: a single pass (the next frame comes soon)."""
    return _decode(_gray(pixels))


# -- judging ------------------------------------------------------------------------------------
def value_of(pattern: str, field: str, text: str) -> str | None:
    """What ``pattern`` takes from a barcode's ``text``: the named group ``field``, else group 1, else
    the whole match; None when it does not match (or the value is empty)."""
    if not pattern:
        return None
    match = re.search(pattern, text)
    if match is None:
        return None
    if field in match.re.groupindex:
        value = match.group(field)
    elif match.re.groups:
        value = match.group(1)
    else:
        value = match.group(0)
    return value.strip() if value and value.strip() else None


def active(rules: "BarcodesConfig | None") -> bool:
    """Whether any rule is set (else pages are not read at all)."""
    return rules is not None and bool(rules.patient_id or rules.accession or rules.separator)


def judge(barcodes: Iterable[Barcode], context: "StudyContext", rules: "BarcodesConfig") -> Verdict:
    """The verdict on a page's ``barcodes`` for the session's ``context``: a separator sheet (its
    other barcodes do not matter: it is not stored), else the first barcode naming another patient
    or order. A session without a patient ID (accession) is not compared on it."""
    barcodes = list(barcodes)
    if any(value_of(rules.separator, "separator", b.text) is not None for b in barcodes):
        return Verdict(separator=True)
    for barcode in barcodes:
        for field, pattern, own in (("patient_id", rules.patient_id, context.patient_id),
                                    ("accession", rules.accession, context.accession)):
            value = value_of(pattern, field, barcode.text)
            if value is not None and own.strip() and value != own.strip():
                return Verdict(Mismatch(field, value))
    return Verdict()


def check(capture: Capture, context: "StudyContext", rules: "BarcodesConfig | None") -> Capture:
    """``capture`` carrying its verdict in its metadata when it has one (read only when a rule is set;
    video clips and PDFs are not read)."""
    if not active(rules):
        return capture
    verdict = judge(read(capture), context, rules)
    if not verdict:
        return capture
    import dataclasses

    return dataclasses.replace(capture, metadata={**capture.metadata, METADATA_KEY: verdict.to_json()})


def flagged(captures: Sequence[Capture]) -> list[tuple[int, Mismatch]]:
    """The pages (0-based positions) whose barcode names another patient or order."""
    out = []
    for position, capture in enumerate(captures):
        mismatch = Verdict.of(capture).mismatch
        if mismatch is not None:
            out.append((position, mismatch))
    return out


class BarcodeMismatch(KioskError):
    """Pages whose barcode names another patient or order: not sent unless the operator confirms."""

    def __init__(self, pages: Sequence[tuple[int, Mismatch]], hint: str = "") -> None:
        """``pages``: (page number from 1, what its barcode names)."""
        self.pages = list(pages)
        lines = [f"page {number} carries {mismatch.describe()}" for number, mismatch in self.pages]
        super().__init__("; ".join(lines) + ": not sent under this patient",
                         hint or "remove the page if it belongs to someone else, or confirm it belongs here "
                                 "(touch UI: Send anyway with the admin PIN; command line: --ignore-barcode-mismatch)")
