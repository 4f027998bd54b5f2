"""The DICOM media application profiles (PS3.11) an export can follow: one table drives the
export's transcoding, the configuration check and docs/media.md."""

from __future__ import annotations

from dataclasses import dataclass

EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"


@dataclass(frozen=True)
class Profile:
    """One General Purpose media profile: its medium and the transfer syntaxes it allows.

    ``lossless`` is what an uncompressed or losslessly compressed object is written in;
    ``allowed`` are kept as they are (an object already lossy in JPEG stays JPEG where allowed).
    """

    name: str
    medium: str
    lossless: str
    allowed: tuple[str, ...]
    annex: str


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("STD-GEN-CD", "CD-R", EXPLICIT_LE, (EXPLICIT_LE,), "PS3.11 Annex D"),
    Profile("STD-GEN-DVD-RAM", "DVD-RAM", EXPLICIT_LE, (EXPLICIT_LE,), "PS3.11 Annex D"),
    Profile("STD-GEN-USB", "USB or flash memory", EXPLICIT_LE, (EXPLICIT_LE,), "PS3.11 Annex V"),
    Profile("STD-GEN-USB-JPEG", "USB or flash memory", JPEG_LOSSLESS_SV1,
            (EXPLICIT_LE, JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS_SV1), "PS3.11 Annex V"),
    Profile("STD-GEN-USB-J2K", "USB or flash memory", J2K_LOSSLESS, (EXPLICIT_LE, J2K_LOSSLESS, J2K),
            "PS3.11 Annex V"),
)}
