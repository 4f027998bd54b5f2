"""Derived lossy copies: what a destination with ``transfer_syntax = "jpeg"`` or ``"j2k-lossy"`` gets.

Lossy compression makes a new image (PS3.3 C.7.6.1.1.5): the copy gets a
SOP Instance UID of its own, Lossy Image Compression 01 with its ratio and
method, Image Type DERIVED, a Derivation Description and Code (DCM 113040
"Lossy Compression"), and a Source Image Sequence pointing at the original
(DCM 121320 "Uncompressed predecessor"). The new UID is a function of the
original UID, the destination and the syntax (``derived_uid``): a re-send
after a crash repeats it, and storage commitment asks for it.

Objects already lossy (Lossy Image Compression 01, e.g. JPEG photos kept as
they are, or in a lossy transfer syntax) and objects without pixels
(Encapsulated PDF) are sent as they are: compressing again would lose more
for nothing (``derives``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiosk import transfer_syntaxes as tsx

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

LOSSY_COMPRESSION = ("113040", "DCM", "Lossy Compression")  # PS3.16 CID 7203 Image Derivation
UNCOMPRESSED_PREDECESSOR = ("121320", "DCM", "Uncompressed predecessor")  # CID 7202 Source Image Purposes
COLOURS = ("MONOCHROME1", "MONOCHROME2", "RGB")  # what the encoders take (decoded YBR arrives as RGB)


def lossy_syntax(name: str) -> tsx.TransferSyntax | None:
    """The row of a lossy ``transfer_syntax`` choice ("jpeg", "j2k-lossy"), else None."""
    row = tsx.BY_NAME.get(name)
    return row if row is not None and not row.lossless else None


def derived_uid(original_uid: str, destination: str, syntax_uid: str) -> str:
    """The SOP Instance UID of the lossy copy of ``original_uid`` sent to ``destination`` in ``syntax_uid``.

    A 2.25 UID (PS3.5 B.2) from a name-based UUID (version 5, SHA-1) of the three. No organisation root:
    changing ``uid_root`` later must not change the UID that storage commitment asks for. (pydicom's
    ``generate_uid`` ignores its entropy sources without a prefix.)
    """
    import uuid

    name = "\n".join(("kiosk lossy copy", original_uid, destination, syntax_uid))
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


def derives(ds: "Dataset", transfer_syntax: str) -> bool:
    """Whether ``ds`` (read with or without its pixels) in ``transfer_syntax`` is made into a lossy copy:
    it has an image, and its pixels have never been through a lossy step."""
    from pydicom.uid import JPEGTransferSyntaxes, MPEGTransferSyntaxes

    row = tsx.BY_UID.get(transfer_syntax)
    already = (ds.get("LossyImageCompression") == "01" or (row is not None and not row.lossless)
               or transfer_syntax in JPEGTransferSyntaxes or transfer_syntax in MPEGTransferSyntaxes)
    return not already and all(k in ds for k in ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel"))


def derive(ds: "Dataset", row: tsx.TransferSyntax, destination: str, original_class: str) -> None:
    """Make ``ds`` (the whole object, ``derives`` true) the lossy copy in ``row`` for ``destination``.

    ``original_class``: the original's SOP Class UID, for the Source Image Sequence (``ds`` may already
    carry the class it is sent as). Raises ``kiosk.dicomize.codecs.EncodeError`` when the pixels
    cannot be stored in ``row`` (e.g. 16-bit as JPEG Baseline).
    """
    import numpy as np
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import UID

    from kiosk.dicomize.codecs import EncodeError, write_pixels

    original_uid = str(ds.SOPInstanceUID)
    source = UID(ds.file_meta.TransferSyntaxUID)
    if source.is_compressed:
        known = tsx.BY_UID.get(source)
        ds.decompress(decoding_plugin=known.decoder if known else "", generate_instance_uid=False)
    if ds.PhotometricInterpretation not in COLOURS:
        raise EncodeError(f"{ds.PhotometricInterpretation} pixels cannot be compressed as {row.title}",
                          "send this object to a destination without a lossy transfer_syntax")
    frames = ds.pixel_array
    if row.encoder == tsx.PILLOW and int(ds.get("NumberOfFrames", 1) or 1) == 1 and "NumberOfFrames" in ds:
        frames = frames[np.newaxis]  # the JPEG writer takes a frame axis whenever Number of Frames is present
    try:
        write_pixels(ds, frames, row.name, [])
    except EncodeError as exc:  # its hint speaks of --ts; here the destination's setting decides
        raise EncodeError(exc.message, "give the destination a transfer_syntax that holds it (j2k-lossy holds "
                          "8- and 16-bit images), or send it to another one") from None
    ds.SOPInstanceUID = derived_uid(original_uid, destination, row.uid)
    ds.ImageType = ["DERIVED", *(values(ds, "ImageType")[1:] or ["SECONDARY"])]
    step = (f"Lossy compression ({row.title}, {values(ds, 'LossyImageCompressionRatio')[-1]}:1) of the image "
            "in Source Image Sequence, for sending")
    ds.DerivationDescription = "; ".join(filter(None, [ds.get("DerivationDescription", ""), step]))[:1024]
    ds.DerivationCodeSequence = Sequence([*ds.get("DerivationCodeSequence", []), code(LOSSY_COMPRESSION)])
    reference = Dataset()
    reference.ReferencedSOPClassUID = original_class
    reference.ReferencedSOPInstanceUID = original_uid
    reference.PurposeOfReferenceCodeSequence = Sequence([code(UNCOMPRESSED_PREDECESSOR)])
    ds.SourceImageSequence = Sequence([*ds.get("SourceImageSequence", []), reference])


def describe(name: str) -> list[str]:
    """The line ``kiosk send --explain`` shows for a destination's ``transfer_syntax``, if it is lossy."""
    row = lossy_syntax(name)
    if row is None:
        return []
    return [f"images sent as lossy {row.title} copies with a SOP Instance UID of their own (already lossy "
            "images and documents as they are)"]


def values(ds: "Dataset", keyword: str) -> list:
    """An attribute's values as a list (pydicom gives one value bare)."""
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    return list(value) if not isinstance(value, (str, bytes)) and hasattr(value, "__iter__") else [value]


def code(value: tuple[str, str, str]) -> "Dataset":
    """A code sequence item from (Code Value, Coding Scheme Designator, Code Meaning)."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value
    return item
