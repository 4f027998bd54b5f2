"""Barcode accuracy and speed (issue 19). Run: ``flock /tmp/kiosk-bench.lock .venv/bin/pytest -s
tests/benchmarks/test_barcodes_bench.py``.

200 generated A4 300 dpi pages with one label-sized barcode each (the five formats in turn,
module sizes as label printers make them, rotated -3..+3 deg, one in eight turned a quarter,
blur, sensor noise, every third one JPEG-compressed as a scanner's JPEG mode does) and 100
pages without a barcode (text; every other one with a photo-like patch). Targets: the right
value on >= 99 % of the barcode pages, no value on any barcode-free page, no wrong value ever.
Time per page is printed against zxing-cpp's own defaults on the same pages (every format,
every option: the reference). ``KIOSK_BENCH_QUICK=1``: 25 + 10 pages, no targets asserted.
"""

from __future__ import annotations

import os
import random
import time

import numpy as np
import pytest

from kiosk import barcodes
from kiosk.capture import Capture, SourceKind
from tests.support.barcode_pages import FORMATS, blank_page, label_text, page

pytestmark = pytest.mark.benchmark
QUICK = os.environ.get("KIOSK_BENCH_QUICK") == "1"
WITH, WITHOUT = (25, 10) if QUICK else (200, 100)


def _scanned(pixels: np.ndarray, jpeg: bool) -> np.ndarray:
    if not jpeg:
        return pixels
    import cv2

    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)


def _pages():
    rng = random.Random(19)
    formats = sorted(FORMATS)
    for n in range(WITH):
        fmt = formats[n % len(formats)]
        text = label_text(rng, fmt)
        pixels = page(text, fmt, seed=1000 + n).pixels
        if n % 8 == 7:
            pixels = np.ascontiguousarray(np.rot90(pixels, k=rng.choice((1, 3))))
        yield fmt, text, _scanned(pixels, n % 3 == 2)
    for n in range(WITHOUT):
        yield "", "", _scanned(blank_page(2000 + n).pixels, n % 3 == 2)


def test_barcodes_on_300_dpi_pages():
    import zxingcpp

    per_format: dict[str, list[int]] = {f: [0, 0, 0] for f in sorted(FORMATS)}  # right, missed, wrong
    false_reads = wrong = 0
    ours = reference = 0.0
    reference_right = 0
    pages = 0
    for fmt, text, pixels in _pages():
        pages += 1
        capture = Capture(kind=SourceKind.SCANNED_DOCUMENT, pixels=pixels, dpi=300)
        started = time.perf_counter()
        found = [b.text for b in barcodes.read(capture)]
        ours += time.perf_counter() - started
        started = time.perf_counter()
        theirs = [b.text for b in zxingcpp.read_barcodes(pixels)]
        reference += time.perf_counter() - started
        if not fmt:
            false_reads += len(found)
            continue
        reference_right += theirs == [text]
        counts = per_format[fmt]
        if found == [text]:
            counts[0] += 1
        elif not found:
            counts[1] += 1
        else:
            counts[2] += 1
            wrong += 1
    right = sum(c[0] for c in per_format.values())
    print(f"\nbarcodes: {right}/{WITH} pages read right ({100 * right / WITH:.1f} %), "
          f"{wrong} wrong values, {false_reads} reads on {WITHOUT} barcode-free pages")
    for fmt, (ok, missed, bad) in per_format.items():
        print(f"  {fmt:<11} {ok} right, {missed} missed, {bad} wrong")
    print(f"  time per page: kiosk {1000 * ours / pages:.0f} ms, zxing-cpp defaults {1000 * reference / pages:.0f} ms "
          f"(ratio {ours / reference:.2f}; the defaults read {reference_right}/{WITH} right)")
    if QUICK:
        return
    assert right >= 0.99 * WITH
    assert wrong == 0 and false_reads == 0
