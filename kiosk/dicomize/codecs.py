"""Transfer syntaxes: native pixel data, compression, JPEG passthrough, lossy bookkeeping.

The builders describe the pixels (Image Pixel module); this module writes
Pixel Data in the chosen transfer syntax, adjusts the Photometric
Interpretation where a codec demands it (YBR_FULL_422 for JPEG Baseline,
YBR_RCT/YBR_ICT for colour JPEG 2000) and records every lossy step in
Lossy Image Compression, its Ratio and Method.
"""

from __future__ import annotations

import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import compress, pack_bits
from pydicom.uid import UID
from pydicom.valuerep import format_number_as_ds

from kiosk import transfer_syntaxes as tsx
from kiosk.errors import KioskError, UsageError
from kiosk.jpeg import JpegInfo

class EncodeError(KioskError):
    """The pixels cannot be stored in the chosen transfer syntax."""


def check_ts_name(name: str) -> str:
    """``name`` if it is a known transfer syntax choice, else a UsageError."""
    if name not in tsx.CHOICES:
        raise UsageError(f"unknown transfer syntax {name!r}", f"use one of {', '.join(tsx.CHOICES)}")
    return name


def set_file_meta(ds: Dataset, ts: str) -> None:
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(ts)


def write_pixels(ds: Dataset, frames: np.ndarray, name: str, history: list[tuple[float, str]],
                 j2k_ratio: float = 10.0, jpeg_quality: int = 90) -> None:
    """Store ``frames`` (``(N,) R x C [x 3]``, as described by ``ds``) as Pixel Data.

    ``name`` is a transfer syntax choice other than "auto" (resolve it first).
    ``history`` lists the lossy steps the pixels went through already (ratio, method).
    """
    history = list(history)
    row = tsx.by_name(name)
    if ds.BitsAllocated not in row.bits:
        if ds.BitsAllocated == 1:
            raise EncodeError(f"1-bit pixel data can only be stored uncompressed, not as {name}")
        fits = ", ".join(r.name for r in tsx.BY_NAME.values() if ds.BitsAllocated in r.bits and r.encoder != tsx.NATIVE)
        raise EncodeError(f"{row.title} holds {'/'.join(map(str, row.bits))}-bit images only; "
                          f"this one has {ds.BitsStored} bits", f"use a --ts that holds them: {fits}")
    ds.PhotometricInterpretation = row.photometric(ds.SamplesPerPixel, ds.PhotometricInterpretation)
    if row.encoder == tsx.NATIVE:
        data = pack_bits(frames.astype(np.uint8)) if ds.BitsAllocated == 1 else frames.tobytes()
        ds.PixelData = data + b"\0" if len(data) % 2 else data
        ds["PixelData"].VR = "OW" if ds.BitsAllocated == 16 else "OB"
        set_file_meta(ds, row.uid)
    elif row.encoder == tsx.PILLOW:
        _encode_jpeg_baseline(ds, frames, jpeg_quality)
    else:
        set_file_meta(ds, tsx.EXPLICIT_LE.uid)
        kwargs = {"j2k_cr": [j2k_ratio]} if row is tsx.J2K_LOSSY else {}
        try:
            compress(ds, row.uid, frames, encoding_plugin=row.plugin, generate_instance_uid=False, **kwargs)
        except (RuntimeError, ValueError) as exc:
            raise EncodeError(f"cannot encode the pixels as {name}: {exc}") from None
    if row.method:
        history.append((_ratio(ds, frames), row.method))
    set_lossy(ds, history)


def encapsulate_jpegs(ds: Dataset, streams: list[bytes], info: JpegInfo, history: list[tuple[float, str]]) -> None:
    """JPEG passthrough: the files' own streams become the frames, byte for byte."""
    ds.PhotometricInterpretation = photometric_of_jpeg(info)
    ds.PixelData = encapsulate(streams)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    set_file_meta(ds, tsx.JPEG_BASELINE.uid)
    raw = info.width * info.height * info.components * len(streams)
    set_lossy(ds, [*history, (raw / sum(len(s) for s in streams), tsx.JPEG_BASELINE.method)])


def photometric_of_jpeg(info: JpegInfo) -> str | None:
    """Part 5 8.2.1: the Photometric Interpretation of a baseline JPEG kept as it is, or
    None when no allowed value describes it (then it must be decoded and stored anew)."""
    space = info.color_space
    if space == "GRAY":
        return "MONOCHROME2"
    if info.components != 3:
        return None
    if not info.subsampled:
        # YBR_FULL, the label of 4:4:4 YCbCr, is not among the values allowed with JPEG Baseline.
        return "RGB" if space == "RGB" else None
    (luma_h, luma_v), cb, cr = info.sampling
    # YBR_FULL_422: chrominance halved horizontally (4:2:2), or in both directions (4:2:0).
    halved = cb == cr and luma_h == 2 * cb[0] and luma_v in (cb[1], 2 * cb[1])
    return "YBR_FULL_422" if space == "YCbCr" and halved else None


def set_lossy(ds: Dataset, history: list[tuple[float | None, str | None]]) -> None:
    """Lossy Image Compression 00, or 01 with one ratio and method per lossy step.

    A source may not know its step's ratio or method (a stream, a codec DICOM
    has no term for): that attribute is then left out, since its values must
    pair up with the steps.
    """
    ratios, methods = [r for r, _ in history], [m for _, m in history]
    ds.LossyImageCompression = "01" if history else "00"
    _set_or_drop(ds, "LossyImageCompressionRatio",
                 [format_number_as_ds(round(r, 2)) for r in ratios] if history and None not in ratios else None)
    _set_or_drop(ds, "LossyImageCompressionMethod", methods if history and None not in methods else None)


def _set_or_drop(ds: Dataset, keyword: str, value: list | None) -> None:
    if value is not None:
        setattr(ds, keyword, value)
    elif keyword in ds:
        delattr(ds, keyword)


def _encode_jpeg_baseline(ds: Dataset, frames: np.ndarray, quality: int) -> None:
    from PIL import Image

    stack = frames if "NumberOfFrames" in ds else frames[np.newaxis]
    streams = []
    for frame in stack:
        out = io.BytesIO()
        # subsampling=1 is 4:2:2, the only subsampling YBR_FULL_422 describes exactly.
        Image.fromarray(frame).save(out, "JPEG", quality=quality, subsampling=1, optimize=False)
        streams.append(out.getvalue())
    ds.PixelData = encapsulate(streams)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    set_file_meta(ds, tsx.JPEG_BASELINE.uid)


def _ratio(ds: Dataset, frames: np.ndarray) -> float:
    from pydicom.encaps import generate_fragments

    compressed = sum(len(f) for f in generate_fragments(ds.PixelData))
    return frames.nbytes / max(compressed, 1)
