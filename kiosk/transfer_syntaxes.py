"""The transfer syntaxes the kiosk writes, sends and reads: one table.

``kiosk convert/acquire --ts``, a destination's ``transfer_syntax`` (its
validation and the transcoding when sending) and the file checks all read
their names, UIDs and rules from ``TABLE``; docs/objects.md lists it (a test
holds the two equal). No pydicom here: ``kiosk --help`` needs the names only.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Not a transfer syntax: each file keeps its own (JPEG files passed through, the rest JPEG-LS lossless).
AUTO = "auto"

#: How the kiosk writes pixels in a syntax: uncompressed, with Pillow (JPEG Baseline), or a pydicom
#: encoding plugin (faster than pydicom's own: its RLE is ~12x slower).
NATIVE, PILLOW = "native", "pillow"


@dataclass(frozen=True)
class TransferSyntax:
    """One transfer syntax and what the kiosk does with it.

    ``name``: what users type (``--ts``, ``transfer_syntax``); "" for syntaxes
    the kiosk only reads and passes on. ``encoder``: ``NATIVE``, ``PILLOW``, a
    pydicom plugin name, or None (pass-through only). ``rgb_as``: the
    Photometric Interpretation RGB pixels are stored under (PS3.5 8.2).
    ``method``: the Lossy Image Compression Method of a lossy syntax.
    ``transcode``: sending may convert a file to it (lossless only, so the
    instance keeps its identity, PS3.5 A.4). ``decoder``: the pydicom plugin
    that decodes it when a peer needs it uncompressed; "" lets pydicom choose.
    """

    name: str
    uid: str
    title: str
    lossless: bool
    encoder: str | None
    bits: tuple[int, ...] = (8, 16)
    rgb_as: str = "RGB"
    method: str | None = None
    transcode: bool = False
    decoder: str = ""

    @property
    def plugin(self) -> str:
        """The pydicom encoding plugin to use; "" lets pydicom choose (also for rows it cannot encode)."""
        return "" if self.encoder in (NATIVE, PILLOW, None) else self.encoder

    def photometric(self, samples: int, current: str) -> str:
        """The Photometric Interpretation of pixels now labelled ``current`` once stored in this syntax."""
        return self.rgb_as if samples == 3 and current == "RGB" else current


EXPLICIT_LE = TransferSyntax("explicit", "1.2.840.10008.1.2.1", "Explicit VR Little Endian", True, NATIVE,
                             bits=(1, 8, 16), transcode=True)
IMPLICIT_LE = TransferSyntax("implicit", "1.2.840.10008.1.2", "Implicit VR Little Endian", True, NATIVE,
                             bits=(1, 8, 16), transcode=True)
RLE = TransferSyntax("rle", "1.2.840.10008.1.2.5", "RLE Lossless", True, "pylibjpeg", transcode=True)
# Decoded by CharLS: pydicom's first choice, pylibjpeg-libjpeg, is ~10x slower (an A4 300 dpi
# colour page 0.42 s against 0.045 s) on the way to a PACS that accepts no JPEG-LS.
JPEG_LS = TransferSyntax("jpeg-ls", "1.2.840.10008.1.2.4.80", "JPEG-LS Lossless", True, "pyjpegls", transcode=True,
                         decoder="pyjpegls")
# PS3.5 8.2.4: colour JPEG 2000 uses the reversible (lossless) or irreversible component transform.
J2K = TransferSyntax("j2k", "1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless Only", True, "pylibjpeg",
                     rgb_as="YBR_RCT", transcode=True)
J2K_LOSSY = TransferSyntax("j2k-lossy", "1.2.840.10008.1.2.4.91", "JPEG 2000", False, "pylibjpeg",
                           rgb_as="YBR_ICT", method="ISO_15444_1")
# 4:2:2 (PS3.5 8.2.1: YBR_FULL_422 describes it exactly); 8-bit only (Process 1).
JPEG_BASELINE = TransferSyntax("jpeg", "1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)", False, PILLOW,
                               bits=(8,), rgb_as="YBR_FULL_422", method="ISO_10918_1")
EXPLICIT_BE = TransferSyntax("", "1.2.840.10008.1.2.2", "Explicit VR Big Endian (retired)", True, None, bits=(1, 8, 16))
DEFLATED = TransferSyntax("", "1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", True, None,
                          bits=(1, 8, 16))
# Video (PS3.5 8.2.5-8.2.9): the whole bit stream in the pixel data, 4:2:0 (YBR_PARTIAL_420); the kiosk
# writes H.264 High 4.1/4.2 and HEVC Main/Main 10 (kiosk.video) and passes the others on.
MPEG2_MAIN = TransferSyntax("", "1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level", False, None,
                            bits=(8,), rgb_as="YBR_PARTIAL_420", method="ISO_13818_2")
MPEG2_HIGH = TransferSyntax("", "1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level", False, None,
                            bits=(8,), rgb_as="YBR_PARTIAL_420", method="ISO_13818_2")
H264_HIGH_41 = TransferSyntax("", "1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1", False,
                              None, bits=(8,), rgb_as="YBR_PARTIAL_420", method="ISO_14496_10")
H264_BD_41 = TransferSyntax("", "1.2.840.10008.1.2.4.103",
                            "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1", False, None, bits=(8,),
                            rgb_as="YBR_PARTIAL_420", method="ISO_14496_10")
H264_HIGH_42 = TransferSyntax("", "1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video",
                              False, None, bits=(8,), rgb_as="YBR_PARTIAL_420", method="ISO_14496_10")
HEVC_MAIN = TransferSyntax("", "1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1", False, None,
                           bits=(8,), rgb_as="YBR_PARTIAL_420", method="ISO_23008_2")
HEVC_MAIN10 = TransferSyntax("", "1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1", False, None,
                             bits=(8, 16), rgb_as="YBR_PARTIAL_420", method="ISO_23008_2")
VIDEO: tuple[TransferSyntax, ...] = (MPEG2_MAIN, MPEG2_HIGH, H264_HIGH_41, H264_BD_41, H264_HIGH_42, HEVC_MAIN,
                                     HEVC_MAIN10)

TABLE: tuple[TransferSyntax, ...] = (EXPLICIT_LE, IMPLICIT_LE, RLE, JPEG_LS, J2K, J2K_LOSSY, JPEG_BASELINE,
                                     EXPLICIT_BE, DEFLATED, *VIDEO)
BY_NAME: dict[str, TransferSyntax] = {row.name: row for row in TABLE if row.name}
BY_UID: dict[str, TransferSyntax] = {row.uid: row for row in TABLE}
#: The UIDs of the video syntaxes: the whole clip is one stream, not frames.
VIDEO_UIDS: frozenset[str] = frozenset(row.uid for row in VIDEO)
#: The choices users have, in the order help and messages list them.
CHOICES: tuple[str, ...] = (AUTO, *BY_NAME)
#: "auto" for what the kiosk digitizes itself: lossless, the best ratio at the best speed (docs/objects.md).
DEFAULT_LOSSLESS = JPEG_LS
#: Uncompressed, in the order sending prefers them when a file's own syntax was not accepted.
UNCOMPRESSED: tuple[str, ...] = (EXPLICIT_LE.uid, IMPLICIT_LE.uid, EXPLICIT_BE.uid)


def by_name(name: str) -> TransferSyntax:
    """The row a user's choice names (not "auto"); KeyError otherwise (check it with ``choice_problem`` first)."""
    return BY_NAME[name]


def choice_problem(value: str) -> str | None:
    """Why ``value`` is not a transfer syntax choice (a config message fragment), or None."""
    return None if value in CHOICES else f"is {value!r}; use one of {', '.join(CHOICES)}"
