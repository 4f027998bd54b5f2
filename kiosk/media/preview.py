"""A DICOM image file's middle frame as a small 8-bit RGB picture (the study list's thumbnails).

Only the one frame is decoded (``pydicom.pixels.pixel_array`` with an index), then put
through the object's own Modality LUT and VOI LUT or window (the values a viewer starts
with); colour pixels come as RGB. Nothing here is diagnostic: it shows the operator which
study a row is.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def render(path: Path, size: int = 160) -> np.ndarray | None:
    """``path``'s middle frame as an RGB uint8 array at most ``size`` pixels on its longest side, or None
    when it holds no pixels or they cannot be decoded here (e.g. a codec pydicom lacks)."""
    from pydicom import dcmread
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

    try:
        header = dcmread(path, defer_size=1024)  # the pixels are not read here
        if "PixelData" not in header:
            return None
        frames = int(header.get("NumberOfFrames", 1) or 1)
        pixels = pixel_array(path, index=frames // 2)
        photometric = str(header.get("PhotometricInterpretation", ""))
        if photometric == "PALETTE COLOR":
            pixels = apply_color_lut(pixels, header)
        elif pixels.ndim == 2:
            pixels = apply_voi_lut(apply_modality_lut(pixels, header), header)
    except Exception as exc:  # noqa: BLE001 - any file a disc brings: shown as "no picture", never raised
        log.info("no preview of %s: %s", Path(path).name, type(exc).__name__)
        return None
    return _to_rgb(pixels, invert=photometric == "MONOCHROME1", size=size)


def _to_rgb(pixels: np.ndarray, invert: bool, size: int) -> np.ndarray:
    from PIL import Image

    if pixels.dtype != np.uint8:  # stretched to 8 bits (after the VOI LUT: the window's range)
        values = pixels.astype(np.float64)
        low, high = float(values.min()), float(values.max())
        pixels = ((values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)).astype(np.uint8)
    if invert:
        pixels = 255 - pixels
    image = Image.fromarray(pixels).convert("RGB")
    image.thumbnail((size, size))
    return np.asarray(image)
