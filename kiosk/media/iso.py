"""A File-set folder as an ISO 9660 image, and burned to a CD or DVD, with xorriso (GPL, run as a
program: packaging/install-deps.sh installs it).

The image is ISO 9660 level 1 (the PDI File IDs fit it as they are: 8 upper-case characters, no
more than 8 levels, PS3.12 Annex F), with Rock Ridge and Joliet names so that every system shows
the same names. Burning writes the same image to a blank (or blankable) disc in the drive.
"""

from __future__ import annotations

import logging
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from kiosk.errors import KioskError

log = logging.getLogger(__name__)

_VOLUME_ID = re.compile(r"[^A-Z0-9_]")


class MediaWriteError(KioskError):
    """The image could not be made or the disc not burned; the message says why."""


def iso_volume_id(label: str) -> str:
    """``label`` as an ISO 9660 Volume ID (d-characters, up to 32); "DICOM" if nothing is left."""
    return _VOLUME_ID.sub("_", label.upper().strip())[:32].strip("_") or "DICOM"


def iso_argv(folder: Path, iso: Path, volume: str) -> list[str]:
    """The xorriso command that writes ``folder`` as the image ``iso``."""
    return ["xorriso", "-as", "mkisofs", "-quiet", "-iso-level", "1", "-r", "-J", "-V", iso_volume_id(volume),
            "-o", str(iso), str(folder)]


def burn_argv(iso: Path, device: str) -> list[str]:
    """The xorriso command that burns the image ``iso`` to the disc in ``device`` (cdrecord emulation:
    blanks a used rewritable disc first, ejects it when done)."""
    return ["xorriso", "-as", "cdrecord", "-v", f"dev={device}", "blank=as_needed", "-eject", str(iso)]


def make_iso(folder: Path, iso: Path, volume_id: str = "") -> None:
    """Write the File-set in ``folder`` as the ISO image ``iso``."""
    folder, iso = Path(folder), Path(iso)
    if not (folder / "DICOMDIR").is_file():
        raise MediaWriteError(f"{folder} holds no DICOMDIR", "export to the folder first ('kiosk media export')")
    _run(iso_argv(folder, iso, volume_id or folder.name), f"cannot make the image {iso}")
    log.info("ISO image %s written (%d bytes)", iso, iso.stat().st_size)


def check_drive(device: str) -> None:
    """Raise ``MediaWriteError`` unless ``device`` is a block device (a drive, not a typo or an unplugged one)."""
    try:
        mode = Path(device).stat().st_mode
    except OSError:
        mode = 0
    if not stat.S_ISBLK(mode):
        raise MediaWriteError(f"there is no disc drive {device}", "connect the burner, or name its device "
                              "(e.g. /dev/sr0; [media] burner)")


def burn(folder: Path, device: str, scratch: Path | None = None) -> None:
    """Burn the File-set in ``folder`` to the disc in ``device`` (e.g. /dev/sr0) via an image made in
    ``scratch`` (default: the system's temporary folder)."""
    check_drive(device)
    with tempfile.TemporaryDirectory(prefix="kiosk-burn-", dir=scratch) as scratch:
        iso = Path(scratch) / "medium.iso"
        make_iso(folder, iso)
        _run(burn_argv(iso, device), f"cannot burn the disc in {device}")
    log.info("burned %s to %s", folder, device)


def _run(argv: list[str], what: str) -> None:
    if shutil.which(argv[0]) is None:
        raise MediaWriteError(f"{what}: xorriso is not installed", "install the package xorriso "
                              "(apt-get install xorriso, or packaging/install-deps.sh)")
    result = subprocess.run(argv, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        last = [line for line in result.stderr.splitlines() if line.strip()][-3:]
        raise MediaWriteError(f"{what}: xorriso failed ({'; '.join(last) or result.returncode})",
                              "check the disc (blank, writable) and free space")
