"""The ``kiosk`` command: one module per subcommand, heavy imports deferred.

Each subcommand module defines ``register(subparsers)`` (adding its parser
with ``set_defaults(run=..., needs_config=...)``) and keeps pydicom,
pynetdicom and Kivy imports inside its ``run`` so ``kiosk --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from kiosk import __version__
from kiosk.errors import KioskError

# Order is the order shown in --help.
SUBCOMMANDS = ["config", "devices", "acquire", "echo", "worklist", "query", "store", "send", "import", "outbox", "listen", "convert",
               "inbox", "operator", "audit", "media", "demo"]
# A command whose name is a Python keyword lives in a module named otherwise.
MODULES = {"import": "importing"}

log = logging.getLogger("kiosk")


def build_parser(only: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The command line's parser, with every command, or only those named in ``only`` (``main`` builds
    just the one it runs: importing every command's module costs ~0.15 s, a third of a short run)."""
    parser = argparse.ArgumentParser(
        prog="kiosk",
        description="Capture-to-DICOM station: scan, grab and import images, send them to PACS. "
        "With no command, starts the touch UI.",
    )
    parser.add_argument("--version", action="version", version=f"kiosk {__version__}")
    parser.add_argument("--config", metavar="FILE", help="configuration file (default: $KIOSK_CONFIG, then the user config dir)")
    parser.add_argument("--debug", action="store_true", help="log everything, show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in only or SUBCOMMANDS:
        importlib.import_module(f"kiosk.cli.{MODULES.get(name, name)}").register(sub)
    return parser


def _named(argv: Sequence[str] | None) -> list[str]:
    """The command ``argv`` names before any other word (after the global options), as a list; else []."""
    words = list(sys.argv[1:] if argv is None else argv)
    while words:
        word = words.pop(0)
        if word == "--config":
            words = words[1:]
        elif not word.startswith("-"):
            return [word] if word in SUBCOMMANDS else []
    return []


def report(error: KioskError) -> None:
    """Print a people-facing error: one line per problem, then the hint."""
    for line in error.message.splitlines():
        print(f"kiosk: error: {line}", file=sys.stderr)
    if error.hint:
        print(f"kiosk: {error.hint}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(only=_named(argv))
    args = parser.parse_args(argv)
    from kiosk.logsetup import FILE_ONLY, setup_logging
    from kiosk.private import UMASK

    os.umask(UMASK)  # what the kiosk writes holds patient data (see kiosk.private)

    log_file = setup_logging(debug=args.debug, verbose=args.verbose)
    try:
        if args.command is None:
            from kiosk.audit import trail
            from kiosk.config import load_config
            from kiosk.ui.launch import run_ui

            config = load_config(args.config)
            trail.configure(config)
            return run_ui(config)
        config = None
        if getattr(args, "needs_config", True):
            from kiosk.audit import trail
            from kiosk.config import load_config
            from kiosk.net import fastpath

            config = load_config(args.config)
            trail.configure(config)  # which kiosk this is in its audit messages, and where they go
            fastpath.apply(config)  # [network] fast_path, for this process
        return int(args.run(args, config) or 0)
    except KioskError as error:
        if args.debug:
            log.exception("error")
        report(error)
        return error.exit_code
    except KeyboardInterrupt:
        print("kiosk: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the last line of defence: no tracebacks for users
        if args.debug:
            raise
        where = f"; details in {log_file}" if log_file else ""
        print(f"kiosk: internal error: {type(error).__name__}: {error}{where}", file=sys.stderr)
        print("kiosk: run again with --debug to see the traceback, and please report it", file=sys.stderr)
        log.error("internal error", exc_info=True, extra=FILE_ONLY)
        return 1
