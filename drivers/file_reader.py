"""Image and PDF files -> captures (the ``file:`` driver's loader); which files are videos (``is_video``).

JPEG files are kept as they are whenever the dicomizer can pass them through
(baseline, no EXIF rotation), so no generation loss happens; everything else
is decoded with Pillow: PNG (8/16-bit, palette, alpha flattened on white),
BMP, GIF (first frame), TIFF (every page; 1-, 8-, 16-bit), progressive/CMYK/
12-bit JPEG. PDFs are kept as bytes. Nothing is read whole before its first
bytes say what it is and its size is within ``MAX_FILE_BYTES``;
``max_pixels`` is checked from the header, before anything is decoded, to
stop decompression bombs.

Nothing is kept that a viewer could not show: a JPEG's data is decoded once
to check that it holds the image its header announces, a PDF must parse
(document structure and first page).

Every failure is a ``FileLoadError`` naming the file and the problem.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterable, Iterator

import numpy as np

from kiosk.capture import Capture, EncodedFormat, SourceKind
from kiosk.errors import KioskError
from kiosk.jpeg import JpegError, decode_jpeg, parse_jpeg, verify_jpeg

if TYPE_CHECKING:
    from PIL import Image

# Video files (``is_video``; ``drivers.video_file`` makes clips of them): what ``sniff`` calls the containers,
# ISO base media (MP4, MOV, M4V), Matroska (MKV, WebM) and AVI, and their names.
VIDEO_FORMATS = ("MP4", "Matroska", "AVI")
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
DEFAULT_MAX_PIXELS = 100_000_000  # an A4 page at 1200 dpi is ~140 M: scan those directly, not as files
#: JPEG and PDF files are held in memory whole; 100 megapixels of 16-bit RGB, uncompressed, take 600 MB.
MAX_FILE_BYTES = 1 << 30
HEAD = 16  # bytes enough for ``sniff``
MB = 1 << 20
SUPPORTED = "JPEG, PNG, BMP, GIF, TIFF, PDF or video (MP4, MOV, MKV, WebM, AVI)"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".pdf"}
_MAGIC = [(b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"BM", "BMP"), (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"), (b"%PDF-", "PDF"),
          (b"\x1a\x45\xdf\xa3", "Matroska")]  # EBML: MKV and WebM
# The first box of an ISO base media file (MP4, M4V, 3GP) or QuickTime movie (MOV), after its 4-byte size.
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")


class FileLoadError(KioskError):
    """A file that cannot become a capture: the message names the file and why."""

    def __init__(self, path: str | os.PathLike[str], problem: str, hint: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}", hint)


def find_files(inputs: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """The files named, with directories walked (sorted; hidden entries and files
    that neither have an image/PDF/video name nor start like one are skipped there)."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and is_candidate(Path(root) / name):
                        yield Path(root) / name
        else:
            yield path


def is_candidate(path: Path) -> bool:
    """Named like an image, PDF or video, or starting like one (a camera's JPEG without extension)."""
    if path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
        return True
    try:
        with _open(path) as handle:
            return sniff(handle.read(HEAD)) is not None
    except FileLoadError:
        return False  # a pipe, device or folder without an image name
    except OSError:
        return True  # let load_file report the problem


def sniff(head: bytes) -> str | None:
    """The format the first bytes announce, or None (video: "MP4" for MP4/MOV/M4V, "Matroska", "AVI")."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[4:8] in _ISO_BOXES:
        return "MP4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    return None


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts like a video container (by its bytes, whatever its name)."""
    try:
        with _open(Path(path)) as handle:
            return sniff(handle.read(HEAD)) in VIDEO_FORMATS
    except (FileLoadError, OSError):
        return False  # load_file reports the problem


def load_file(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS,
              kind: SourceKind = SourceKind.FILE_IMPORT) -> list[Capture]:
    """Captures from one file (several for a multi-page TIFF). Raises ``FileLoadError``; a video file
    (``is_video``) becomes a clip through ``drivers.video_file.import_video`` instead."""
    path = Path(path)
    try:
        with _open(path) as handle:
            info = os.fstat(handle.fileno())
            if not info.st_size:
                raise FileLoadError(path, "is empty (0 bytes)")
            fmt = sniff(handle.read(HEAD))
            if fmt is None:
                suffix = path.suffix.lower()
                named = f"has an image name ({path.suffix}) but " if suffix in IMAGE_SUFFIXES else \
                    f"has a video name ({path.suffix}) but " if suffix in VIDEO_SUFFIXES else ""
                raise FileLoadError(path, f"{named}is not a {SUPPORTED} file")
            if fmt in VIDEO_FORMATS:
                raise FileLoadError(path, f"is a video ({fmt}), not an image or PDF",
                                    "import it as a clip: kiosk convert, or the Files source")
            if info.st_size > MAX_FILE_BYTES:
                raise FileLoadError(path, f"is too large: {info.st_size / MB:,.0f} MB, the limit is "
                                          f"{MAX_FILE_BYTES / MB:,.0f} MB", "scale it down or split it first")
            base = dict(kind=kind, source=str(path), acquired_at=dt.datetime.fromtimestamp(info.st_mtime))
            handle.seek(0)
            # Reads bounded by the limit too: the file may be growing.
            if fmt == "PDF":
                return [_load_pdf(path, handle.read(MAX_FILE_BYTES), base)]
            if fmt == "JPEG":
                return [_load_jpeg(path, handle.read(MAX_FILE_BYTES), max_pixels, base)]
            return _load_pillow(path, handle, fmt, max_pixels, base)
    except OSError as exc:
        raise FileLoadError(path, f"cannot be read ({exc.strerror})", "check its permissions") from None


def _open(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file; ``FileLoadError`` if it is none."""
    try:
        # Non-blocking: opening a pipe would wait for a writer.
        handle = os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
    except FileNotFoundError:
        raise FileLoadError(path, "does not exist") from None
    mode = os.fstat(handle.fileno()).st_mode
    if stat.S_ISDIR(mode):
        handle.close()
        raise FileLoadError(path, "is a directory")
    if not stat.S_ISREG(mode):
        handle.close()
        raise FileLoadError(path, "is not a regular file (a device, pipe or socket)", "name an image or PDF file")
    return handle


def _load_pdf(path: Path, data: bytes, base: dict) -> Capture:
    if b"%%EOF" not in data[-2048:]:
        raise FileLoadError(path, "is a truncated PDF (no %%EOF at the end)")
    _check_pdf(path, data)
    return Capture(encoded=data, encoded_format=EncodedFormat.PDF, metadata={"title": path.stem}, **base)


def _check_pdf(path: Path, data: bytes) -> None:
    """Refuse a PDF whose structure (cross-reference table, trailer, page tree) or first page does not parse."""
    from pypdf import PdfReader

    hint = "open it in a PDF viewer to check it, then save or print it to a new PDF"
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise FileLoadError(path, "is a password-protected PDF",
                                "save a copy without the password (e.g. print it to PDF) and import that")
        if len(reader.pages) == 0:
            raise FileLoadError(path, "is a PDF without pages", hint)
        contents = reader.pages[0].get_contents()
        if contents is not None:
            contents.operations  # noqa: B018 - reading them parses the page's drawing operators
    except FileLoadError:
        raise
    except Exception:  # noqa: BLE001 - pypdf raises many kinds on malformed input
        # Not pypdf's message: it may quote the document's bytes (names, findings).
        raise FileLoadError(path, "is not a readable PDF (its structure or first page is damaged)", hint) from None


def _load_jpeg(path: Path, data: bytes, max_pixels: int, base: dict) -> Capture:
    try:
        info = parse_jpeg(data)
    except JpegError as exc:
        raise FileLoadError(path, str(exc)) from None
    _check_size(path, info.width, info.height, max_pixels)
    try:
        verify_jpeg(data, info)
    except JpegError as exc:
        raise FileLoadError(path, str(exc), "open it in an image viewer to check it, then save it anew") from None
    dpi = info.dpi
    if info.baseline and info.exif_orientation == 1:
        return Capture(encoded=data, encoded_format=EncodedFormat.JPEG, dpi=dpi, **base)
    try:
        pixels, bits = decode_jpeg(data, info)
    except JpegError as exc:
        raise FileLoadError(path, f"is a corrupt JPEG ({exc})") from None
    ratio = info.width * info.height * info.components * (2 if info.precision > 8 else 1) / len(data)
    metadata = {} if info.lossless else {"lossy_history": [[round(ratio, 2), "ISO_10918_1"]]}
    return Capture(pixels=pixels, bits_stored=bits if pixels.dtype == np.uint16 else None, dpi=dpi,
                   metadata=metadata, **base)


def _load_pillow(path: Path, handle: BinaryIO, fmt: str, max_pixels: int, base: dict) -> list[Capture]:
    from PIL import Image, ImageOps

    captures = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
            # From the open file: Pillow reads the header, then only what each page needs.
            with Image.open(handle) as image:
                frames = getattr(image, "n_frames", 1) if fmt == "TIFF" else 1
                for index in range(frames):
                    image.seek(index)
                    _check_size(path, image.width, image.height, max_pixels)
                    image.load()
                    page = ImageOps.exif_transpose(image)
                    pixels, bits = _to_array(path, page)
                    captures.append(Capture(pixels=pixels, bits_stored=bits, dpi=_dpi(image), index=index,
                                            metadata=_lossy_tiff(image), **base))
    except FileLoadError:
        raise
    except Image.DecompressionBombError:
        raise FileLoadError(path, "is too large (over the pixel limit)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise FileLoadError(path, f"is a truncated or corrupt {fmt} file ({exc})") from None
    return captures


def _lossy_tiff(image: Image.Image) -> dict:
    """A TIFF page stored with JPEG compression went through JPEG's loss (its ratio is not kept)."""
    if image.info.get("compression") in ("jpeg", "tiff_jpeg"):
        return {"lossy_history": [[None, "ISO_10918_1"]]}
    return {}


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise FileLoadError(path, f"is too large: {width} x {height} = {width * height / 1e6:.0f} megapixels, "
                                  f"the limit is {max_pixels / 1e6:.0f}", "scale it down first")


def _dpi(image) -> float | None:
    dpi = image.info.get("dpi")
    try:
        value = float(dpi[0]) if dpi else 0.0
    except (TypeError, ValueError, IndexError):
        return None
    return value if value > 1 else None


def _to_array(path: Path, image) -> tuple[np.ndarray, int | None]:
    """Pixels as a Capture wants them: bool, uint8 gray/RGB or uint16 gray."""
    from PIL import Image

    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=bool).copy(), None
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16), 16
    if mode == "I":
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise FileLoadError(path, "has 32-bit pixel values; only 1-, 8- and 16-bit images are supported")
        return values.astype(np.uint16), 16
    if mode == "F":
        raise FileLoadError(path, "has floating-point pixels; only 1-, 8- and 16-bit images are supported")
    if "A" in mode or (mode == "P" and "transparency" in image.info) or mode == "PA":
        # Alpha flattened on white: what a viewer of the original shows on paper.
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba).convert("L" if mode in ("LA", "La") else "RGB")
    elif mode == "P":
        image = image.convert("RGB")
    elif mode not in ("L", "RGB"):
        image = image.convert("RGB")
    pixels = np.asarray(image).copy()
    if pixels.ndim == 3 and mode in ("P", "PA") and _is_gray(pixels):
        pixels = pixels[..., 0].copy()
    return pixels, None


def _is_gray(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))
