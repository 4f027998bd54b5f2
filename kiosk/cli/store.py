"""``kiosk store FILE|DIR... --to NODE [--commit]``: send now, through the outbox's destination classes
(one association for a DICOM node, STOW-RS requests for a DICOMweb one), without queueing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.config import Config

if TYPE_CHECKING:
    from kiosk.outbox.destinations import Item, Outcome


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("store", help="send DICOM files to a node now (C-STORE or STOW-RS), optionally with storage commitment")
    parser.add_argument("paths", nargs="+", metavar="FILE|DIR", help="DICOM files, or folders searched recursively")
    parser.add_argument("--to", required=True, metavar="NODE", help="a configured destination, AET@host:port, or folder:PATH")
    parser.add_argument("--commit", action="store_true", help="ask for storage commitment (also when the destination has storage_commitment = true)")
    parser.add_argument("--commit-timeout", type=float, default=30.0, metavar="S",
                        help="seconds to wait for the commitment report before calling instances 'not confirmed' (default 30)")
    parser.set_defaults(run=run, needs_config=True)


class _ProgressLine:
    """A one-line progress display on a terminal; silent otherwise."""

    def __init__(self, instances_total: int, bytes_total: int) -> None:
        self.tty = sys.stderr.isatty()
        self.instances_total = instances_total
        self.bytes_total = bytes_total

    def __call__(self, instances_done: int, bytes_done: int) -> None:
        if self.tty:
            print(f"\rsending {instances_done}/{self.instances_total} instances, "
                  f"{bytes_done / 1e6:.1f}/{self.bytes_total / 1e6:.1f} MB", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def run(args: argparse.Namespace, config: Config) -> int:
    import threading

    from kiosk.errors import KioskError, UsageError
    from kiosk.net.store import collect_files
    from kiosk.outbox.core import OutboxSettings
    from kiosk.outbox.destinations import DeliveryError, Outcome, destination_from_spec, parse_destination
    from kiosk.outbox.shaping import sent_identity, shaped

    name, spec = parse_destination(config, args.to)
    destination = destination_from_spec(name, spec, config)
    label = str(getattr(destination, "node", name))
    commit = args.commit or spec.get("storage_commitment", False)
    if args.commit and not destination.supports_commitment:
        raise UsageError(f"{label} cannot confirm storage commitment", "leave out --commit")
    files = collect_files(args.paths, lambda text: print(f"note: {text}", file=sys.stderr))
    if not files:
        raise KioskError("no files to send", "name DICOM files or folders that contain them")
    slots = [_item(path) for path in files]
    items = [slot for slot in slots if not isinstance(slot, Outcome)]
    try:
        failure = None
        # The copies this destination gets (coercion, lossy): made in a private folder under the spool.
        with shaped(items, getattr(destination, "node", None), OutboxSettings.from_config(config).spool_dir) as ready:
            line = _ProgressLine(len(ready.items), sum(item.size for item in ready.items))
            try:
                sent = destination.send(ready.items, line, threading.Event()) if ready.items else []
            except DeliveryError as exc:
                if exc.partial is None:
                    raise
                failure, sent = exc, exc.partial  # aborted midway: still a line for every file
            finally:
                line.close()
            # Storage commitment is asked for what was sent: a lossy copy's own UID, a video object's fallback.
            node = getattr(destination, "node", None)
            good = [sent_identity(item, node, bool(outcome.fallback)) if outcome.fallback
                    else (item.sop_class_uid, item.sop_instance_uid)
                    for item, outcome in zip(ready.items, sent) if outcome.outcome in ("success", "warning")]
            outcomes = iter(ready.merge(sent))
        results = [(path, slot if isinstance(slot, Outcome) else next(outcomes)) for path, slot in zip(files, slots)]
        for path, outcome in results:
            if outcome.outcome == "success":
                print(f"stored   {path}" + (f" ({outcome.fallback})" if outcome.fallback else ""))
            else:
                word = {"warning": "warning", "transient": "retry"}.get(outcome.outcome, "FAILED")
                print(f"{word:<8} {path}: {outcome.message}")
        print(f"{len(good)} of {len(results)} instance(s) stored on {label}")
        if failure is not None:
            raise failure
        exit_code = 0 if len(good) == len(results) else 1
        if commit and good and destination.supports_commitment:
            outcome = destination.commit(good, timeout=args.commit_timeout)
            print(f"storage commitment: {len(outcome.committed)} committed, {len(outcome.failed)} failed, "
                  f"{len(outcome.unconfirmed)} not confirmed")
            for uid, reason in sorted(outcome.failed.items()):
                print(f"not committed {uid}: failure reason {reason:04X}")
            for uid in sorted(outcome.unconfirmed):
                print(f"not confirmed {uid}")
            if outcome.failed or outcome.unconfirmed:
                exit_code = 1
        return exit_code
    finally:
        destination.close()


def _item(path: Path) -> "Item | Outcome":
    """The file as an outbox ``Item`` (no checksum: a file the outbox did not accept), or a failed Outcome."""
    from kiosk.outbox.destinations import Item, Outcome
    from kiosk.part10 import NotPart10Error, read_meta

    try:
        meta = read_meta(path)
        size = path.stat().st_size
    except NotPart10Error as exc:
        return Outcome("failed", None, f"{exc.message}; {exc.hint}" if exc.hint else exc.message)
    except OSError as exc:
        return Outcome("failed", None, f"cannot read the file ({exc.strerror or exc})")
    return Item(path, meta.sop_class_uid, meta.sop_instance_uid, size, meta.transfer_syntax)
