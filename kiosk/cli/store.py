"""``kiosk store FILE|DIR... --to NODE [--commit]``: send now, over one association."""

from __future__ import annotations

import argparse
import sys

from kiosk.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("store", help="send DICOM files to a node now (C-STORE), optionally with storage commitment")
    parser.add_argument("paths", nargs="+", metavar="FILE|DIR", help="DICOM files, or folders searched recursively")
    parser.add_argument("--to", required=True, metavar="NODE", help="a configured destination or AET@host:port")
    parser.add_argument("--commit", action="store_true", help="ask for storage commitment (also when the destination has storage_commitment = true)")
    parser.add_argument("--commit-timeout", type=float, default=30.0, metavar="S",
                        help="seconds to wait for the commitment report before calling instances 'not confirmed' (default 30)")
    parser.set_defaults(run=run, needs_config=True)


class _ProgressLine:
    """A one-line progress display on a terminal; silent otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def __call__(self, p) -> None:  # noqa: ANN001 - StoreProgress
        if self.tty:
            mb = p.bytes_done / 1e6
            print(f"\rsending {p.instances_done}/{p.instances_total} instances, {mb:.1f}/{p.bytes_total / 1e6:.1f} MB",
                  end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def run(args: argparse.Namespace, config: Config) -> int:
    from kiosk.config import resolve_node
    from kiosk.errors import KioskError
    from kiosk.net.errors import NetworkError
    from kiosk.net.store import collect_files, store_files

    node = resolve_node(config, args.to)
    files = collect_files(args.paths)
    if not files:
        raise KioskError("no files to send", "name DICOM files or folders that contain them")
    line = _ProgressLine()
    failure = None
    try:
        result = store_files(node, config.local, files, progress=line)
    except NetworkError as exc:
        if exc.partial is None:
            raise
        failure, result = exc, exc.partial  # aborted midway: still a line for every file
    finally:
        line.close()
    for r in result.results:
        if r.outcome == "success":
            print(f"stored   {r.path}")
        else:
            word = {"warning": "warning", "transient": "retry", "failed": "FAILED"}[r.outcome]
            print(f"{word:<8} {r.path}: {r.message}")
    good = result.count("success", "warning")
    print(f"{good} of {len(result.results)} instance(s) stored on {node}")
    if failure is not None:
        raise failure
    exit_code = 0 if result.ok else 1
    if (args.commit or node.storage_commitment) and good:
        from kiosk.net.commitment import commit_with_listener

        stored = [(r.sop_class_uid, r.sop_instance_uid) for r in result.results if r.outcome in ("success", "warning")]
        outcome = commit_with_listener(node, config, stored, timeout=args.commit_timeout)
        print(f"storage commitment: {len(outcome.committed)} committed, {len(outcome.failed)} failed, "
              f"{len(outcome.unconfirmed)} not confirmed")
        for uid, reason in sorted(outcome.failed.items()):
            print(f"not committed {uid}: failure reason {reason:04X}")
        for uid in sorted(outcome.unconfirmed):
            print(f"not confirmed {uid}")
        if outcome.failed or outcome.unconfirmed:
            exit_code = 1
    return exit_code
