"""Pixels of image objects: deciding how they are stored, and the image modules.

``plan_pixels`` turns one or more captures (the frames of one object) into a
``PixelPlan``: either the original JPEG streams (passthrough) or one decoded
array, with the Image Pixel description that goes with it. The plan also
carries the lossy steps the pixels went through already.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import format_number_as_ds

from kiosk import transfer_syntaxes as tsx
from kiosk.capture import Capture, EncodedFormat
from kiosk.dicomize import codecs
from kiosk.errors import KioskError
from kiosk.jpeg import JpegError, JpegInfo, decode_jpeg, parse_jpeg


class PixelError(KioskError):
    """A capture's pixels cannot be turned into an image object."""


@dataclass
class PixelPlan:
    """How one object's pixels are stored; ``frames`` is None for JPEG passthrough."""

    rows: int
    columns: int
    samples: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    frames: np.ndarray | None = None
    jpeg_streams: list[bytes] | None = None
    jpeg_info: JpegInfo | None = None
    history: list[tuple[float, str]] = field(default_factory=list)


def passthrough_info(capture: Capture) -> JpegInfo | None:
    """The JPEG header of a capture that can be kept as it is, else None."""
    if capture.encoded_format is not EncodedFormat.JPEG or capture.encoded is None:
        return None
    try:
        info = parse_jpeg(capture.encoded)
    except JpegError:
        return None
    keep = info.baseline and info.exif_orientation == 1 and codecs.photometric_of_jpeg(info) is not None
    return info if keep else None


def plan_pixels(captures: list[Capture], ts_name: str, monochrome1: bool = False,
                single_bit: bool = False) -> tuple[PixelPlan, str]:
    """Plan the pixels of one object from ``captures`` (one per frame); returns the
    plan and the transfer syntax name resolved from "auto"."""
    infos = [passthrough_info(c) for c in captures]
    if ts_name in (tsx.AUTO, tsx.JPEG_BASELINE.name) and not monochrome1 and all(infos) and _same_jpeg_layout(infos):
        info = infos[0]
        plan = PixelPlan(info.height, info.width, info.components, codecs.photometric_of_jpeg(info), 8, 8,
                         jpeg_streams=[c.encoded for c in captures], jpeg_info=info,
                         history=prior_history(captures))
        return plan, tsx.JPEG_BASELINE.name
    arrays, history, decoded_ratios = [], prior_history(captures), []
    for capture in captures:
        pixels, bits, lossy = _decoded(capture)
        arrays.append((pixels, bits))
        if lossy:
            decoded_ratios.append(lossy[0])
    if decoded_ratios:
        # One step for the object, not one per frame: its ratio is all frames' size over all their
        # JPEG bytes (the frames are the same size, so the harmonic mean of their ratios).
        history.append((len(decoded_ratios) / sum(1 / r for r in decoded_ratios), tsx.JPEG_BASELINE.method))
    shapes = {(a.shape, a.dtype) for a, _ in arrays}
    if len(shapes) != 1:
        raise PixelError("the frames of one object must all have the same size and colour type")
    first, _ = arrays[0]
    bits = max(b for _, b in arrays)
    stack = np.stack([a for a, _ in arrays]) if len(arrays) > 1 else first
    if first.dtype == np.bool_:
        keep_bits = single_bit and (ts_name == tsx.AUTO or 1 in tsx.by_name(ts_name).bits)
        if not keep_bits:
            stack, bits = stack.astype(np.uint8) * np.uint8(255), 8
    if ts_name == tsx.AUTO:
        ts_name = (tsx.EXPLICIT_LE if stack.dtype == np.bool_ else tsx.DEFAULT_LOSSLESS).name
    return _describe(stack, bits, first.ndim == 3, monochrome1, history), ts_name


def _describe(stack: np.ndarray, bits: int, rgb: bool, monochrome1: bool, history: list) -> PixelPlan:
    allocated = 1 if stack.dtype == np.bool_ else stack.itemsize * 8
    if stack.dtype == np.uint16 and int(stack.max(initial=0)) >= 1 << bits:
        raise PixelError(f"pixel values exceed the {bits} bits the capture says it uses")
    photometric = "RGB" if rgb else "MONOCHROME2"
    if monochrome1 and not rgb:
        # Inverted so the image looks the same: MONOCHROME1 shows the lowest value white.
        stack = ~stack if stack.dtype == np.bool_ else (((1 << bits) - 1) - stack).astype(stack.dtype)
        photometric = "MONOCHROME1"
    rows, columns = (stack.shape[-3], stack.shape[-2]) if rgb else stack.shape[-2:]
    return PixelPlan(rows, columns, 3 if rgb else 1, photometric, allocated, bits if allocated != 1 else 1,
                     frames=np.ascontiguousarray(stack), history=history)


def add_image_pixel(ds: Dataset, plan: PixelPlan) -> None:
    """Image Pixel module (without Pixel Data) and, for >8-bit gray, a VOI window."""
    ds.SamplesPerPixel = plan.samples
    ds.PhotometricInterpretation = plan.photometric
    ds.Rows = plan.rows
    ds.Columns = plan.columns
    ds.BitsAllocated = plan.bits_allocated
    ds.BitsStored = plan.bits_stored
    ds.HighBit = plan.bits_stored - 1
    ds.PixelRepresentation = 0
    if plan.samples == 3:
        ds.PlanarConfiguration = 0
    if plan.samples == 1 and plan.bits_stored > 8 and plan.frames is not None:
        low, high = int(plan.frames.min()), int(plan.frames.max())
        ds.WindowCenter = format_number_as_ds((low + high + 1) / 2)
        ds.WindowWidth = format_number_as_ds(float(max(high - low + 1, 2)))


def add_general_image(ds: Dataset, capture: Capture, instance_number: int, burned_in: bool) -> None:
    """General Image module, plus SC Image's Nominal Scanned Pixel Spacing for scans."""
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ""
    ds.ImageLaterality = "U"
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    # PS3.3 C.8.6.2: only for scans (Conversion Type DF, SD, SI).
    if capture.dpi and ds.get("ConversionType") in ("DF", "SD", "SI"):
        spacing = format_number_as_ds(25.4 / capture.dpi)
        ds.NominalScannedPixelSpacing = [spacing, spacing]


def store_pixels(ds: Dataset, plan: PixelPlan, ts_name: str, j2k_ratio: float, jpeg_quality: int) -> None:
    """Pixel Data in ``ts_name`` (already resolved), with the lossy attributes."""
    if plan.jpeg_streams is not None:
        codecs.encapsulate_jpegs(ds, plan.jpeg_streams, plan.jpeg_info, plan.history)
    else:
        codecs.write_pixels(ds, plan.frames, ts_name, plan.history, j2k_ratio, jpeg_quality)


def _same_jpeg_layout(infos: list[JpegInfo | None]) -> bool:
    first = infos[0]
    return all((i.width, i.height, i.components, i.color_space, i.sampling) ==
               (first.width, first.height, first.components, first.color_space, first.sampling) for i in infos)


def prior_history(captures: list[Capture]) -> list[tuple[float, str]]:
    """Lossy steps a driver recorded (``metadata['lossy_history']``); for several
    frames, the longest history stands for all (the most degraded frame)."""
    histories = [c.metadata.get("lossy_history") or [] for c in captures]
    longest = max(histories, key=len)
    return [(None if r is None else float(r), None if m is None else str(m)) for r, m in longest]


def _decoded(capture: Capture) -> tuple[np.ndarray, int, tuple[float, str] | None]:
    """(pixels, bits stored, the lossy step decoding added) of a capture."""
    if capture.pixels is not None:
        # Pixels decoded from a JPEG original (an MJPEG card's frame) carry that JPEG's step.
        step = capture.jpeg_step()
        return capture.pixels, capture.effective_bits, None if step is None else (step[0], step[1])
    if capture.encoded_format is EncodedFormat.JPEG and capture.encoded is not None:
        try:
            info = parse_jpeg(capture.encoded)
            pixels, bits = decode_jpeg(capture.encoded, info)
        except JpegError as exc:
            raise PixelError(str(exc)) from None
        lossy = None if info.lossless else (info.ratio(len(capture.encoded)), tsx.JPEG_BASELINE.method)
        return pixels, bits, lossy
    raise PixelError(f"a {capture.encoded_format.value if capture.encoded_format else 'capture'} "
                     "without pixels cannot become an image")
