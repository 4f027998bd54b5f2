"""``kiosk inbox run [--once]|list [--json]``: file the watched folder's documents and print jobs, see what waits."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from kiosk.config import Config
from kiosk.display import printable


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("inbox", help="file documents from the watched folder and print jobs; list what waits")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    run = actions.add_parser("run", help="file, hold or set aside the documents of [inbox] folder and the print "
                             "folder; watch them until Ctrl-C")
    run.add_argument("--once", action="store_true", help="one pass, then exit (1 if a file went to failed/)")
    run.add_argument("--poll", type=float, default=2.0, metavar="S", help="seconds between passes (default 2)")
    run.set_defaults(run=run_inbox, needs_config=True)

    listing = actions.add_parser("list", help="the documents waiting in the Inbox for a person, and why (oldest "
                                 "first)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=run_list, needs_config=True)


def run_inbox(args: argparse.Namespace, config: Config) -> int:
    from kiosk.errors import UsageError
    from kiosk.inbox.runner import Runner, configured, print_folder

    if not configured(config):
        raise UsageError("there is nothing to watch: [inbox] folder is not set and there is no print folder "
                         f"({print_folder(config)})",
                         "set [inbox] folder (docs/drivers.md, Watched inbox), or install the print queue "
                         "(packaging/install-print-queue.sh)")
    runner = Runner(config, remember=not args.once)
    failed = 0
    try:
        if args.once:
            result = runner.run_once()
            show(result)
            failed = len(result.of("failed"))
        else:
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            print("watching; Ctrl-C stops", file=sys.stderr, flush=True)
            runner.watch(stop, args.poll, show)
    finally:
        runner.close()
    return 1 if failed else 0


def show(result) -> None:  # noqa: ANN001 - a kiosk.inbox.runner.RunResult
    """One line per file taken, then what was left (a line for people; names may be patient data: not logged)."""
    if result.busy:
        print("note: another process is running the inbox; nothing done", file=sys.stderr, flush=True)
    for outcome in result.outcomes:
        print(f"{outcome.action:<6}  {printable(outcome.name)}: {printable(outcome.detail)}  -> {outcome.path}",
              flush=True)
    for problem in result.problems:
        print(f"kiosk: warning: {printable(problem)} (tried again at the next pass)", file=sys.stderr, flush=True)
    if result.waiting:
        print(f"{result.waiting} file(s) still being written (taken once unchanged for [inbox] settle_seconds)",
              file=sys.stderr, flush=True)
    if result.deleted:
        print(f"deleted {result.deleted} file(s) from done/ ([inbox] done_days)", flush=True)


def run_list(args: argparse.Namespace, config: Config) -> int:
    from kiosk.inbox.store import Inbox

    items = Inbox(config).held()
    if args.json:
        print(json.dumps([item.to_json() for item in items], indent=2, ensure_ascii=False))
        return 0
    if not items:
        print("the Inbox is empty")
        return 0
    print(f"{'RECEIVED':<25}  {'SOURCE':<6}  {'NAME':<40}  REASON")
    for item in items:
        name = item.name + (f" ({item.user}@{item.host})" if item.user or item.host else "")
        print(f"{item.received:<25}  {item.source:<6}  {printable(name):<40}  {printable(item.reason)}")
    print(f"{len(items)} document(s) waiting; open the Inbox on the touch UI's patient screen to file them")
    return 0
