"""Explicit VR Big Endian (retired since 2004, still found on old CDs) rewritten as Explicit VR
Little Endian: archives and viewers rarely take it, and pydicom refuses to change a data set's
byte order when writing (its OW, OF, OL, OD and OV values are bytes it never swaps)."""

from __future__ import annotations

from typing import Any

EXPLICIT_BE = "1.2.840.10008.1.2.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}  # the VRs whose bytes are in the file's byte order


def to_little_endian(ds: Any) -> Any:
    """``ds`` (read from Explicit VR Big Endian) made Explicit VR Little Endian, in place: every value
    read and every word of its binary values swapped; returned for convenience."""
    _swap(ds)
    if "file_meta" in ds.__dict__ or getattr(ds, "file_meta", None) is not None:
        ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
    return ds


def _swap(ds: Any) -> None:
    import numpy as np

    for elem in ds:  # reading each element turns the raw big endian one into values
        if elem.VR == "SQ":
            for item in elem.value:
                _swap(item)
        elif (size := _WORD_SIZES.get(elem.VR)) and isinstance(elem.value, bytes) and len(elem.value) % size == 0:
            elem.value = np.frombuffer(elem.value, f">u{size}").astype(f"<u{size}").tobytes()
    ds.set_original_encoding(False, True, ds.original_character_set)
