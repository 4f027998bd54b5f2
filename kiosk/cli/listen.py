"""``kiosk listen``: run our SCP in the foreground so an administrator can test it from the PACS.

The same listener ``kiosk outbox run`` and the touch UI run: C-ECHO and
storage commitment reports, from configured nodes only. Options follow
DCMTK's storescp (``-aet``, the port as the last argument).
"""

from __future__ import annotations

import argparse
import signal
import threading

from kiosk.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("listen", help="answer C-ECHO (and take commitment reports) from configured nodes "
                            "until stopped, to test the kiosk's listener")
    parser.add_argument("port", type=int, nargs="?", help="TCP port (default: [local] port)")
    parser.add_argument("-aet", "--aetitle", metavar="AET", help="our AE title (default: [local] ae_title)")
    parser.set_defaults(run=run, needs_config=True)


def run(args: argparse.Namespace, config: Config) -> int:
    import dataclasses

    from kiosk.config import check_ae_title, check_port
    from kiosk.errors import UsageError
    from kiosk.net.listener import Listener

    for label, value, check in (("port", args.port, check_port), ("AE title", args.aetitle, check_ae_title)):
        problem = check(value) if value is not None else None
        if problem:
            raise UsageError(f"{label} {problem}")
    if args.aetitle:
        config = dataclasses.replace(config, local=dataclasses.replace(config.local, ae_title=args.aetitle))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Listener.from_config(config, port=args.port) as listener:
        allowed = ", ".join(listener.allowed_titles) or "none (configure destinations, worklist or query)"
        tls = f" {listener.tls}" if listener.tls else ""
        print(f"listening as {config.local.ae_title} on port {listener.port}{tls}; accepting {allowed}; "
              "Ctrl+C stops", flush=True)
        stop.wait()
    print("stopped")
    return 0
