"""``kiosk acquire --source URI -o DIR | --send NODE``: scan or grab, dicomize, write or queue.

A streaming ``kiosk.station.Station``: pages are dicomized and written and/or
queued one by one as they come off the scanner, so memory does not grow with
the length of an ADF batch, and the pages already written or queued are kept
when the feeder jams or the user presses Ctrl-C. With ``--send --wait`` the
first page is on its way while the next is scanned.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kiosk.cli.cleanup_options import add_cleanup_options, cleanup_from_args, note_dropped
from kiosk.cli.send import claim_delivery, follow, parse_destinations, print_queued
from kiosk.cli.barcode_options import add_barcode_option, barcode_guard
from kiosk.cli.study_options import add_study_options, options_from_args, study_from_args
from kiosk.config import Config, values_of
from kiosk.errors import KioskError, UsageError
from kiosk.private import DIR_MODE
from kiosk.transfer_syntaxes import AUTO, CHOICES


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "acquire", help="scan or grab images from a device and turn them into DICOM",
        description="Acquire from a scanner, camera, capture card, stream, file or demo device, "
        "write DICOM files to a folder and/or queue them in the outbox.",
        epilog="Sources: sane:DEVICE (e.g. sane:test:0), video:DEVICE_OR_URL (video:/dev/video0, "
        "video:tcp://127.0.0.1:5611, video:clip.mp4), file:PATH, demo:scanner, demo:camera. "
        "'kiosk devices' lists what is attached.")
    parser.add_argument("--source", required=True, metavar="URI", help="what to acquire from")
    parser.add_argument("-o", "--output", metavar="DIR", help="folder for the DICOM files")
    parser.add_argument("--send", metavar="NODE", help="queue the files in the outbox for this destination")
    parser.add_argument("--wait", action="store_true", help="with --send: wait until delivered")
    parser.add_argument("--ts", default=AUTO, choices=CHOICES,
                        help="transfer syntax (default auto: as kiosk convert chooses)")
    scan = parser.add_argument_group("scanner settings (the device reports what it actually used)")
    scan.add_argument("--preset", metavar="NAME",
                      help="Document, Film, Photo or a preset of your own ([presets.NAME] in the config)")
    scan.add_argument("--adf", action="store_true", help="scan every page in the document feeder")
    scan.add_argument("--mode", choices=("color", "gray"))
    scan.add_argument("--depth", type=int, choices=(8, 16))
    scan.add_argument("--dpi", type=float, metavar="N")
    scan.add_argument("--area", metavar="SIZE|X,Y,W,H",
                      help="scan area: A4, A5, A6, B5, LETTER, LEGAL, or X,Y,W,H in mm from the top-left corner "
                      "(default: the whole bed); the scanner may clamp it, the area used is shown")
    video = parser.add_argument_group("video settings")
    video.add_argument("--frames", type=int, metavar="N", help="take N snapshots (default 1)")
    video.add_argument("--clip", type=float, metavar="SECONDS",
                       help="record a video clip (H.264, to disk; at most [acquisition] max_clip_seconds)")
    add_cleanup_options(parser, presets=True)
    add_study_options(parser)
    add_barcode_option(parser)
    parser.set_defaults(run=run, needs_config=True)


def settings_from_args(args: argparse.Namespace, config: Config, scanner: bool) -> Any:
    """The named preset (Document by default for scanners), then the explicit options on top."""
    from drivers.device import Settings
    from drivers.presets import parse_area, preset

    name = args.preset or ("Document" if scanner else None)
    base = preset(name, config.presets.tables()) if name else Settings()
    area = parse_area(args.area) if args.area else None
    return base.merged(mode=args.mode, depth=args.depth, dpi=args.dpi, source="adf" if args.adf else None, area_mm=area)


def run(args: argparse.Namespace, config: Config) -> int:
    if not args.output and not args.send:
        raise UsageError("say where the images go", "add -o DIR, --send NODE, or both")
    if args.frames is not None and args.frames < 1 or args.clip is not None and args.clip <= 0:
        raise UsageError("--frames and --clip need a positive number")
    if args.preset or args.area:
        settings_from_args(args, config, scanner=True)  # an unknown preset or bad area fails before the device opens
    from drivers.live import LiveDevice
    from drivers.registry import open_device
    from kiosk.mpps import track
    from kiosk.station import Station

    from kiosk.existing_study import join_study

    study, first_series = join_study(study_from_args(args, config), config)
    options = options_from_args(args, config, transfer_syntax=args.ts, multiframe=bool(args.clip),
                                first_series_number=first_series)
    with open_device(args.source, values_of(config.acquisition)) as device:
        live = isinstance(device, LiveDevice)
        if args.area and device.info.kind != "scanner":
            raise UsageError(f"--area applies to scanners; {device.info.name} is a {device.info.kind}")
        settings = settings_from_args(args, config, scanner=device.info.kind == "scanner")
        cleaner = _cleaner(args, config, scanner=device.info.kind == "scanner")
        effective = device.configure(settings)
        _note(f"{device.info.name}: {_describe(effective)}")
        if settings.area_mm:
            _note_area(device.info.name, settings.area_mm, effective.area_mm)
        with _Outputs(args, config) as outputs:
            station = Station.stream(study, options, outputs.all, **barcode_guard(args, config))
            mpps = track(station, outputs.outbox.outbox if outputs.outbox is not None else None, config)
            try:
                if live:
                    _acquire_live(device, args, station, cleaner, outputs, config)
                else:
                    for capture in device.batch(_progress):
                        page = cleaner(capture)
                        if page is not None:
                            station.add(page)
            except KeyboardInterrupt:
                device.cancel()
                station.abandon()
                if outputs.folder is not None:
                    _note(f"interrupted: {len(outputs.folder.files)} file(s) kept in {outputs.folder.folder}")
                raise
            except BaseException:
                station.abandon()  # what was written or queued is kept
                raise
            finally:
                _end_progress()
                note_dropped(cleaner.dropped)
                if outputs.folder is not None and outputs.folder.files:
                    _note(f"wrote {len(outputs.folder.files)} file(s) to {outputs.folder.folder}")
                if outputs.outbox is not None and station.jobs:
                    print_queued(station.jobs, outputs.outbox.commitment)
            if outputs.outbox is None:
                station.finish()
                return 0
            return follow(outputs.outbox.outbox, station, args.wait, mpps is not None)


def _acquire_live(device: Any, args: argparse.Namespace, station: Any, cleaner: Any, outputs: "_Outputs",
                  config: Config) -> None:
    if args.clip:
        _record(device, args.clip, station, outputs, config)
    else:
        for capture in device.snapshots(args.frames or 1):
            page = cleaner(capture)
            if page is not None:
                station.add(page)


def _record(device: Any, seconds: float, station: Any, outputs: "_Outputs", config: Config) -> None:
    """Record the clip to a file beside the output (a disk, not memory), hand it to the station
    (a clip is sent as it was recorded: no clean-up), then remove the file."""
    import shutil
    import tempfile

    from kiosk.video.recorder import record_clip

    limit = config.acquisition.max_clip_seconds
    if seconds > limit:
        _note(f"--clip {seconds:g} s is longer than [acquisition] max_clip_seconds: recording {limit:g} s")
        seconds = limit
    # Beside the output: the -o folder, else the outbox's spool (the objects end up on that disk anyway).
    near = outputs.folder.folder if outputs.folder is not None else outputs.outbox.outbox.spool.tmp
    work = Path(tempfile.mkdtemp(prefix=".clip-", dir=near))
    try:
        clip = record_clip(device, seconds, work, config.video, _clip_progress(seconds))
        _end_progress()
        _note(f"recorded {clip.video.describe()}")
        station.add_clip(clip)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _clip_progress(seconds: float) -> Any:
    def show(step: Any) -> None:
        if step.fraction >= 1.0 and step.message:  # stopped early: why (disk full, source lost)
            _end_progress()
            _note(step.message)
        elif sys.stderr.isatty():
            print(f"\rclip: {_clock(step.fraction * seconds)} of {_clock(seconds)}, {step.message}", end="",
                  file=sys.stderr, flush=True)

    return show


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _cleaner(args: argparse.Namespace, config: Config, scanner: bool) -> Any:
    """Clean-up of each page (a ``kiosk.cleanup.Cleaner``): the scan preset's steps and the flags."""
    from drivers.presets import preset_cleanup
    from kiosk.cleanup import Cleaner

    name = args.preset or ("Document" if scanner else None)
    steps = preset_cleanup(name, config.presets.tables()) if name else None
    return Cleaner(cleanup_from_args(args, steps))


class _Outputs:
    """Where acquired objects go: the ``-o`` folder and/or the outbox (``--send``, delivering here
    with ``--wait`` while the pages are still coming, unless a delivery service runs)."""

    def __init__(self, args: argparse.Namespace, config: Config) -> None:
        self.args, self.config = args, config
        self.folder: Any = None  # kiosk.station.FolderOutput
        self.outbox: Any = None  # kiosk.station.OutboxOutput
        self.delivery: Any = None

    @property
    def all(self) -> list[Any]:
        return [o for o in (self.folder, self.outbox) if o is not None]

    def __enter__(self) -> "_Outputs":
        from kiosk.station import FolderOutput, OutboxOutput

        if self.args.output:
            out_dir = Path(self.args.output)
            try:
                out_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            except OSError as exc:
                raise KioskError(f"{out_dir}: cannot create the output folder ({exc.strerror})") from None
            self.folder = FolderOutput(out_dir)
        if self.args.send:
            from kiosk.outbox import Outbox

            destinations, commitment = parse_destinations(self.config, [self.args.send], False)
            outbox = Outbox.from_config(self.config)
            self.outbox = OutboxOutput(outbox, destinations, commitment)
            if self.args.wait:
                self.delivery = claim_delivery(outbox, self.config)
                if self.delivery is not None:
                    self.delivery.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        if self.delivery is not None:
            self.delivery.stop()
        if self.outbox is not None:
            self.outbox.outbox.close()


def _note_area(name: str, wanted: tuple[float, ...], used: tuple[float, ...] | None) -> None:
    """Say when the scanner did not take the requested area as it was (SANE clamps silently)."""
    from drivers.presets import area_matches, format_area

    if used is None:
        _note(f"{name}: this scanner has no adjustable scan area; --area was not applied")
    elif not area_matches(wanted, used):
        _note(f"{name}: the scanner limits the scan area to {format_area(used)} "
              f"({format_area(wanted)} was asked for)")


def _describe(settings: Any) -> str:
    from drivers.presets import format_area

    parts = [settings.mode, f"{settings.depth}-bit" if settings.depth else None,
             f"{settings.dpi:g} dpi" if settings.dpi else None, settings.source,
             f"area {format_area(settings.area_mm)}" if settings.area_mm else None,
             f"{settings.width}x{settings.height}" if settings.width else None,
             f"{settings.fps:g} fps" if settings.fps else None, settings.fourcc]
    return ", ".join(p for p in parts if p) or "default settings"


def _note(text: str) -> None:
    print(text, file=sys.stderr)


def _progress(step: Any) -> None:
    if sys.stderr.isatty():
        print(f"\rpage {step.page + 1}: {step.fraction:4.0%}", end="", file=sys.stderr, flush=True)


def _end_progress() -> None:
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)
