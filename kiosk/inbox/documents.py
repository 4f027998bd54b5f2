"""A document file -> captures: a PDF as it is (Encapsulated PDF) or its pages as images
(``[inbox] as_pages``: Secondary Capture pages), an image file's pages (drivers/file_reader.py).

PDF pages are drawn by poppler's ``pdftoppm`` (poppler-utils, packaging/install-deps.sh) at
``PAGE_DPI``, in colour: a stamp or a signature keeps its colour.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
from pathlib import Path

from drivers.file_reader import DEFAULT_MAX_PIXELS, FileLoadError, load_file
from kiosk.capture import Capture, EncodedFormat, SourceKind

PAGE_DPI = 150  # an A4 page is 1240 x 1754: readable text, ~1 MB per page JPEG-LS lossless
RENDER_TIMEOUT = 120  # seconds for one document's pages


def captures_of(path: Path, as_pages: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Capture]:
    """The captures ``path`` (a PDF or image file) becomes; raises ``FileLoadError``."""
    captures = load_file(path, max_pixels, SourceKind.FILE_IMPORT)
    if not as_pages or captures[0].encoded_format is not EncodedFormat.PDF:
        return captures
    return pdf_pages(path, captures[0], max_pixels)


def pdf_pages(path: Path, document: Capture, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Capture]:
    """The pages of a checked PDF (``document``, from ``load_file``) as images, in order."""
    program = shutil.which("pdftoppm")
    if program is None:
        raise FileLoadError(path, "cannot be turned into pages: pdftoppm is not installed",
                            "install poppler-utils (packaging/install-deps.sh), or set [inbox] as_pages = false")
    with tempfile.TemporaryDirectory(prefix="kiosk-pages-") as work:
        pdf = Path(work) / "document.pdf"
        pdf.write_bytes(document.encoded)
        try:
            done = subprocess.run([program, "-r", str(PAGE_DPI), "-png", str(pdf), str(Path(work) / "page")],
                                  capture_output=True, timeout=RENDER_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise FileLoadError(path, f"took more than {RENDER_TIMEOUT} s to turn into pages",
                                "send it as a PDF ([inbox] as_pages = false)") from None
        pages = sorted(Path(work).glob("page*.png"), key=lambda p: int(p.stem.rpartition("-")[2]))
        if done.returncode != 0 or not pages:
            raise FileLoadError(path, "is a PDF whose pages cannot be drawn",
                                "open it in a PDF viewer to check it, then save or print it to a new PDF")
        captures = []
        for index, page in enumerate(pages):
            image = load_file(page, max_pixels, SourceKind.FILE_IMPORT)[0]
            captures.append(dataclasses.replace(image, dpi=PAGE_DPI, index=index, source=str(path),
                                                acquired_at=document.acquired_at, metadata=dict(document.metadata)))
        return captures
