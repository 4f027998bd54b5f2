"""``kiosk media export PATH... --to DIR``: DICOM files, folders or a medium written as a PDI File-set
(IHE PDI Portable Media Creator): chosen studies, in a media profile; an ISO image or a burned disc.

Registered by the ``media`` command group (kiosk/cli/media.py) through ``register_export``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kiosk.config import Config

DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"  # a DICOMDIR: the medium's index, not an object to export


def register_export(media: argparse._SubParsersAction) -> None:
    """Add ``export`` to the ``media`` subcommands."""
    parser = media.add_parser("export", help="write DICOM files or a medium's studies as a PDI File-set "
                              "(DICOMDIR, README.TXT, web content) to a folder, an ISO image or a disc")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="DICOM files, folders or a medium, searched recursively")
    parser.add_argument("--to", metavar="DIR", type=Path,
                        help="the folder (e.g. a USB stick) the File-set is written to or added to; "
                             "without it, --iso or --burn writes through a temporary folder")
    parser.add_argument("--study", action="append", metavar="UID", default=[],
                        help="export only this study (Study Instance UID); repeatable; default: every study")
    parser.add_argument("--profile", metavar="NAME", help="media profile (default: [media] profile): STD-GEN-CD, "
                        "STD-GEN-DVD-RAM, STD-GEN-USB, STD-GEN-USB-JPEG, STD-GEN-USB-J2K")
    parser.add_argument("--no-web", action="store_true", help="no INDEX.HTM and IHE_PDI previews (default: [media] web_content)")
    parser.add_argument("--label", default="", help="File-set ID and volume label (default: the first patient's ID)")
    parser.add_argument("--iso", metavar="FILE.iso", type=Path, help="also write the File-set as an ISO 9660 image (xorriso)")
    parser.add_argument("--burn", nargs="?", const="", metavar="DEVICE",
                        help="also burn it to the disc in DEVICE (default: [media] burner, else /dev/sr0) with xorriso")
    parser.set_defaults(run=run, needs_config=True)


def run(args: argparse.Namespace, config: Config) -> int:
    import tempfile

    from kiosk.errors import KioskError, UsageError
    from kiosk.media.iso import burn, make_iso
    from kiosk.media.pdi import write_file_set
    from kiosk.media.profiles import PROFILES
    from kiosk.net.store import collect_files

    profile_name = args.profile or config.media.profile
    if profile_name not in PROFILES:
        raise UsageError(f"--profile {profile_name} is not a media profile", f"use one of {', '.join(PROFILES)}")
    if args.to is None and args.iso is None and args.burn is None:
        raise UsageError("nowhere to export to", "give --to DIR, --iso FILE.iso or --burn")
    files = chosen(collect_files(args.paths), set(args.study))
    if not files:
        raise KioskError("no DICOM objects to export" + (" in the chosen studies" if args.study else ""),
                         "name DICOM files, folders or a medium that hold them" +
                         (", and Study Instance UIDs they hold" if args.study else ""))
    with tempfile.TemporaryDirectory(prefix="kiosk-export-") as scratch:
        folder = args.to or Path(scratch)
        if args.to is not None:
            args.to.mkdir(parents=True, exist_ok=True)
        result = write_file_set(folder, files, PROFILES[profile_name], web_content=config.media.web_content and not args.no_web,
                                progress=_progress, label=args.label)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(f"{len(result.written)} object(s) in the File-set in {folder} ({profile_name})")
        for path, reason in result.failed:
            print(f"not exported: {path}: {reason}")
        if args.iso is not None:
            make_iso(folder, args.iso, args.label)
            print(f"ISO image: {args.iso}")
        if args.burn is not None:
            device = args.burn or config.media.burner or "/dev/sr0"
            burn(folder, device)
            print(f"burned to {device}")
    return 1 if result.failed else 0


def chosen(files: list[Path], studies: set[str]) -> list[Path]:
    """The DICOM objects among ``files`` (not DICOMDIRs, nor a medium's README or web pages), of ``studies`` if named."""
    from pydicom import dcmread

    from kiosk.part10 import NotPart10Error, read_meta

    out = []
    for path in files:
        try:
            meta = read_meta(path)
        except NotPart10Error:
            continue
        if meta.sop_class_uid == DIRECTORY_STORAGE:
            continue
        if studies and str(dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
                           .get("StudyInstanceUID", "")) not in studies:
            continue
        out.append(path)
    return out


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\rexporting {done}/{total}", end="", file=sys.stderr, flush=True)
