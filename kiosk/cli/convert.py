"""``kiosk convert INPUT... -o DIR``: image, PDF and video files to DICOM files."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from kiosk.cli.barcode_options import add_barcode_option, barcode_guard
from kiosk.cli.cleanup_options import add_cleanup_options, cleanup_from_args, note_dropped
from kiosk.cli.study_options import add_study_options, options_from_args, study_from_args
from kiosk.errors import KioskError, UsageError
from kiosk.private import DIR_MODE, unused_name
from kiosk.transfer_syntaxes import AUTO, CHOICES

log = logging.getLogger(__name__)

def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "convert", help="convert image, PDF and video files to DICOM",
        description="Convert JPEG, PNG, BMP, GIF, TIFF and PDF files into DICOM Secondary Capture / "
                    "Encapsulated PDF files, and MP4, MOV, M4V, MKV, WebM and AVI files into video objects "
                    "(directories are walked), one line per output.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files or directories")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the .dcm files")
    parser.add_argument("--ts", default=AUTO, choices=CHOICES,
                        help="transfer syntax (default auto: JPEG files kept as they are, others JPEG-LS lossless)")
    parser.add_argument("--multiframe", action="store_true",
                        help="one multi-frame object per multi-page file instead of one per page")
    parser.add_argument("--monochrome1", action="store_true", help="store grayscale as MONOCHROME1 (looks the same)")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="refuse images larger than N pixels (default 100 million)")
    add_cleanup_options(parser)
    add_study_options(parser)
    add_barcode_option(parser)
    parser.set_defaults(run=run, needs_config=True)


def run(args: argparse.Namespace, config: Any) -> int:
    from pydicom.uid import UID

    from drivers.file_reader import DEFAULT_MAX_PIXELS, find_files, is_video, load_file
    from drivers.video_file import import_video, work_folder
    from kiosk.cleanup import Cleaner
    from kiosk.station import FolderOutput, Station

    from kiosk.existing_study import join_study

    study, first_series = join_study(study_from_args(args, config), config)
    options = options_from_args(args, config, transfer_syntax=args.ts, multiframe=args.multiframe,
                                monochrome1=args.monochrome1, first_series_number=first_series)
    out_dir = Path(args.output)
    current = {"path": Path(), "count": 0, "index": 0}  # the input being converted, its objects

    def name_of(_ds: Any) -> Path:
        current["index"] += 1
        suffix = f"-{current['index']}" if current["count"] > 1 else ""
        return unused_name(out_dir / (current["path"].stem + suffix + ".dcm"))

    # No fsync per file: a converter run can be repeated; the outbox is the durable path.
    station = Station.stream(study, options, [FolderOutput(out_dir, durable=False, name_of=name_of)],
                             **barcode_guard(args, config))
    try:
        out_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise KioskError(f"{out_dir}: cannot create the output folder ({exc.strerror})") from None
    files = list(find_files(args.inputs))
    if not files:
        raise UsageError("no input files found", "name image, PDF or video files, or folders holding them")
    outputs: list[Path] = []

    def written(event: Any) -> None:
        outputs.append(event.path)
        print(f"{event.path}  <- {current['path']} ({UID(event.sop_class_uid).name}, "
              f"{UID(event.transfer_syntax).name})")

    station.subscribe(written, "queued")
    failed = written_count = 0
    cleaner = Cleaner(cleanup_from_args(args))
    for path in files:
        outputs.clear()
        try:
            if is_video(path):
                # One clip; a transcoded copy lives beside the output until its objects are written.
                with work_folder(out_dir) as work:
                    imported = import_video(path, work, config.video, progress=_transcoding(path))
                    _end_progress()
                    print(f"{path}: {imported.note}", file=sys.stderr)
                    current.update(path=path, count=station.count_objects([imported.capture]), index=0)
                    station.add_clip(imported.capture)
                written_count += len(outputs)
                continue
            captures = load_file(path, args.max_pixels or DEFAULT_MAX_PIXELS)
            if cleaner.options.any:
                before = cleaner.dropped
                captures = [page for page in map(cleaner, captures) if page is not None]
                note_dropped(cleaner.dropped - before, f"{path}: ")
                if not captures:
                    continue  # every page blank: nothing to write, and no failure
            current.update(path=path, count=station.count_objects(captures), index=0)
            station.add_pages(captures)
            del captures
            written_count += len(outputs)
        except KioskError as error:
            _end_progress()
            line = str(error)  # message and hint
            failed += _fail(path, line if str(path) in error.message else f"{path}: {line}", outputs)
        except Exception as error:  # noqa: BLE001 - one broken input must not stop the others
            log.debug("converting %s failed", path, exc_info=True)
            failed += _fail(path, f"{path}: internal error: {type(error).__name__}: {error}", outputs)
    station.finish()
    print(f"kiosk: {written_count} object(s) written, {len(files) - failed} of {len(files)} input(s) converted",
          file=sys.stderr)
    return 1 if failed else 0


def _transcoding(path: Path) -> Any:
    """Progress of a video being transcoded, on a terminal."""
    def show(fraction: float) -> None:
        if sys.stderr.isatty():
            print(f"\r{path}: transcoding {fraction:4.0%}", end="", file=sys.stderr, flush=True)

    return show


def _end_progress() -> None:
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)


def _fail(path: Path, line: str, outputs: list[Path]) -> int:
    # All objects of one input or none: remove what this input already wrote.
    for done in outputs:
        done.unlink(missing_ok=True)
    print(f"kiosk: error: {line}", file=sys.stderr)
    return 1
