"""The DICOM media application profiles (PS3.11) an export can follow: one table drives the
export's transcoding, the configuration check and docs/media.md (a test holds the two equal).

Checked against PS3.11 (Annex D: STD-GEN-CD and STD-GEN-DVD-RAM; Annex J: the USB and flash
memory profiles with compression) and DCMTK's dcmmkdir, which applies the same rules:

- STD-GEN-CD and STD-GEN-DVD-RAM allow Explicit VR Little Endian only, for every SOP class
  (images, multi-frames, SR, Encapsulated PDF alike).
- STD-GEN-USB-JPEG allows Explicit VR Little Endian, JPEG Lossless SV1, JPEG Baseline and
  JPEG Extended; STD-GEN-USB-J2K Explicit VR Little Endian and both JPEG 2000 syntaxes.
- None of them allows video (MPEG-2, MPEG-4, HEVC): those belong to the BD and DVD video
  profiles, which the kiosk does not write. Such objects are refused, not written non-conformant.

``STD-GEN-USB`` is not a PS3.11 identifier (PS3.11 names the USB family only with compression);
it is the kiosk's name for an uncompressed USB export, which conforms to both STD-GEN-USB-JPEG
and STD-GEN-USB-J2K since both allow Explicit VR Little Endian (``conforms_to`` says so).
"""

from __future__ import annotations

from dataclasses import dataclass

EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"

#: How docs/media.md and messages name the syntaxes of the table.
NAMES = {EXPLICIT_LE: "Explicit VR Little Endian", JPEG_BASELINE: "JPEG Baseline", JPEG_EXTENDED: "JPEG Extended",
         JPEG_LOSSLESS_SV1: "JPEG Lossless SV1", J2K_LOSSLESS: "JPEG 2000 Lossless", J2K: "JPEG 2000"}

#: Transfer syntaxes of video (PS3.5 8.2.5-8.2.8, 10.13-10.16): no General Purpose profile here allows them.
VIDEO = frozenset({
    "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.100.1", "1.2.840.10008.1.2.4.101",
    "1.2.840.10008.1.2.4.101.1", "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.102.1",
    "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.103.1", "1.2.840.10008.1.2.4.104",
    "1.2.840.10008.1.2.4.104.1", "1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.105.1",
    "1.2.840.10008.1.2.4.106", "1.2.840.10008.1.2.4.106.1", "1.2.840.10008.1.2.4.107",
    "1.2.840.10008.1.2.4.108",
})


@dataclass(frozen=True)
class Profile:
    """One General Purpose media profile: its medium and the transfer syntaxes it allows.

    ``lossless`` is what an object not already in an ``allowed`` syntax is written in when it
    was never lossy (the kiosk's own encoders; STD-GEN-USB-JPEG writes Explicit VR Little
    Endian because the kiosk has no JPEG Lossless encoder); objects in an ``allowed`` syntax
    are copied as they are (an already lossy JPEG stays JPEG where JPEG is allowed).
    ``conforms_to``: the PS3.11 identifiers the written File-set conforms to.
    """

    name: str
    medium: str
    lossless: str
    allowed: tuple[str, ...]
    annex: str
    conforms_to: tuple[str, ...] = ()

    @property
    def identifiers(self) -> tuple[str, ...]:
        return self.conforms_to or (self.name,)


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("STD-GEN-CD", "CD-R", EXPLICIT_LE, (EXPLICIT_LE,), "PS3.11 Annex D"),
    Profile("STD-GEN-DVD-RAM", "DVD-RAM", EXPLICIT_LE, (EXPLICIT_LE,), "PS3.11 Annex D"),
    Profile("STD-GEN-USB", "USB or flash memory", EXPLICIT_LE, (EXPLICIT_LE,), "PS3.11 Annex J",
            ("STD-GEN-USB-JPEG", "STD-GEN-USB-J2K")),
    Profile("STD-GEN-USB-JPEG", "USB or flash memory", EXPLICIT_LE,
            (EXPLICIT_LE, JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS_SV1), "PS3.11 Annex J"),
    Profile("STD-GEN-USB-J2K", "USB or flash memory", J2K_LOSSLESS, (EXPLICIT_LE, J2K_LOSSLESS, J2K),
            "PS3.11 Annex J"),
)}


def disc_profile(name: str) -> Profile:
    """The profile a burned CD or DVD follows when ``name`` (``[media] profile``) is the configured one:
    itself for a disc profile; STD-GEN-CD for a USB one, whose JPEG and JPEG 2000 syntaxes a CD
    profile does not allow (IHE PDI: a CD holds STD-GEN-CD; every CD reader then reads it)."""
    profile = PROFILES[name]
    return PROFILES["STD-GEN-CD"] if "USB" in profile.medium else profile
